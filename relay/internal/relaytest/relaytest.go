// Package relaytest runs relays inside tests: a configuration that delivers to
// receivers on loopback, and a relay that stops (and must stop cleanly) with the test.
// It is imported by tests only.
package relaytest

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/netguard"
	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/testutil"
)

// Config is the production configuration with test-sized timings, allowed to deliver to
// 127.0.0.1 (where testutil's receivers listen) and nowhere else private.
func Config(t testing.TB) pipeline.Config {
	t.Helper()
	cfg := pipeline.DefaultConfig()
	allow, err := netguard.ParseAllowlist("127.0.0.1/32")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Targets = allow
	cfg.HTTPTimeout = 2 * time.Second
	cfg.PollInterval = 500 * time.Millisecond
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{200 * time.Millisecond, 200 * time.Millisecond}}
	return cfg
}

// Logger writes warnings and errors to the test log (everything from debug up with
// go test -v or RELAY_TEST_LOG set).
func Logger(t testing.TB) zerolog.Logger {
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	if testing.Verbose() || os.Getenv("RELAY_TEST_LOG") != "" {
		log = log.Level(zerolog.DebugLevel)
	}
	return log
}

// Start runs a relay on pool until stop is called or the test ends, whichever is first,
// and waits until it consumes. stop waits for the relay and fails the test if it stops
// with an error or does not stop within the HTTP timeout plus 10 seconds.
func Start(t testing.TB, pool *pgxpool.Pool, cfg pipeline.Config) (r *pipeline.Relay, stop func()) {
	t.Helper()
	r, err := pipeline.New(pool, cfg, Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("relay stopped with error: %v", err)
				}
			case <-time.After(cfg.HTTPTimeout + 10*time.Second):
				t.Errorf("relay did not stop in time")
			}
		})
	}
	t.Cleanup(stop)
	testutil.Eventually(t, 10*time.Second, r.Running, "relay did not start")
	return r, stop
}
