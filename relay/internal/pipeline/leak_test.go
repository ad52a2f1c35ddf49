package pipeline_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/relay/internal/relaytest"
	"github.com/relayhq/relay/testutil"
)

// Every goroutine Relay.Run starts has ended when it returns: the notifier, the
// recorder, housekeeping, the router and its subscribers, the delivery HTTP client's
// connections, and everything a retry or a 410 started.
func TestRunLeavesNoGoroutineBehind(t *testing.T) {
	// Not parallel: goleak sees every goroutine of the process, other tests' too.
	db := testutil.NewDB(t)
	ok := testutil.NewReceiver(t, nil)
	failing := testutil.NewReceiver(t, status(http.StatusInternalServerError))
	gone := testutil.NewReceiver(t, status(http.StatusGone))
	addWebhook(t, db, "post.added", ok.URL(), "")
	addWebhook(t, db, "post.added", failing.URL(), "")
	addWebhook(t, db, "post.added", gone.URL(), "")
	// Everything already running (the test's pool, receivers, the shared cluster's
	// clients) is not the relay's.
	before := goleak.IgnoreCurrent()

	cfg := testConfig(t)
	cfg.Retry.Schedule = []time.Duration{50 * time.Millisecond, time.Hour}
	r, err := pipeline.New(db.Pool, cfg, relaytest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	for range 5 {
		emit(t, db, "post.added", map[string]any{"post": map[string]any{}})
	}
	ok.WaitFor(t, 5, 10*time.Second)
	failing.WaitFor(t, 10, 10*time.Second) // first attempts and one retry each
	gone.WaitFor(t, 1, 10*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := goleak.Find(before); err != nil {
		t.Errorf("goroutines left after Run returned:\n%v", err)
	}
}
