package ghost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
)

// shared is the one site a test binary's tests share (booting Ghost costs 5–15 s). It is
// the package's only mutable state, guarded by mu.
var shared struct {
	mu   sync.Mutex
	site *Site
	err  error
}

// Shared returns this test binary's shared development-mode site, started and set up
// (Setup's key is Site.AdminKey()) on first use. Tests that use it must leave it as they
// found it for the next: remove the webhooks they add (webhooks fire for everyone's
// posts), never restart or stop it (take Start for that). A package that uses it stops
// it from TestMain: testutil.Main(m, ghost.StopShared).
func Shared(t testing.TB) *Site {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.site == nil && shared.err == nil {
		// A failure is remembered: retrying a broken boot in every test multiplies the wait.
		shared.site, shared.err = launch(context.Background(), Options{})
		if shared.err == nil {
			if _, err := shared.site.setup(context.Background()); err != nil {
				// A site that cannot be set up is of no use to anyone: stop it now.
				shared.err = errors.Join(err, shared.site.stop(), os.RemoveAll(shared.site.ContentDir))
				shared.site = nil
			}
		}
	}
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.site
}

// StopShared stops the shared site, if one was started, and removes its directory.
// Give it to testutil.Main, or call it from TestMain after m.Run.
func StopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	s := shared.site
	shared.site, shared.err = nil, nil
	if s == nil {
		return nil
	}
	if err := s.stop(); err != nil {
		return err
	}
	if err := os.RemoveAll(s.ContentDir); err != nil {
		return fmt.Errorf("ghost: remove %s: %w", s.ContentDir, err)
	}
	return nil
}
