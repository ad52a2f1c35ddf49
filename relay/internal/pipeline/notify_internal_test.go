package pipeline

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/internal/webhook"
	"github.com/relayhq/relay/testutil"
)

// TestCreatedReplayWakesTheReplayer: an idle relay looks for replays only every
// replayIdle; a new replay reaches it at once through relay_replays, announced when the
// replay commits and not before.
func TestCreatedReplayWakesTheReplayer(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	n := newNotifier(db.Pool.Config().ConnConfig.Copy(), zerolog.Nop())
	done := make(chan error, 1)
	go func() { done <- n.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	// The listener wakes everything once it listens (what it missed before then).
	select {
	case <-n.replays:
	case <-time.After(30 * time.Second):
		t.Fatal("the listener never started")
	}

	event, url := "post.published", "https://hooks.example/in"
	w, err := webhook.Store{Pool: db.Pool}.Add(ctx, webhook.Input{Event: &event, TargetURL: &url})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateReplayIn(ctx, tx, store.ReplayRequest{WebhookID: w.ID, Since: time.Now().Add(-time.Hour), RequestedBy: "test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.replays:
		t.Fatal("woken before the replay committed")
	case <-time.After(200 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-n.replays:
	case <-time.After(replayIdle):
		t.Fatalf("no wake within %s of the replay's commit", replayIdle)
	}
}

// TestQuietOutboxPollStretchesAndANotificationResetsIt: without notifications the
// outbox poll waits poll, 2 × poll, 4 × poll, then quietMax × poll; after a notification
// or a batch the waits start again from eagerMaxStep and double.
func TestQuietOutboxPollStretchesAndANotificationResetsIt(t *testing.T) {
	t.Parallel()
	const poll = 20 * time.Millisecond
	wake := make(chan struct{}, 1)
	b := &wakeBackoff{wake: wake, closing: make(chan struct{}), poll: poll, retry: time.Second}
	waited := func() time.Duration {
		start := time.Now()
		if d := b.HandleError(nil, true, nil); d != 0 {
			t.Fatalf("HandleError returned %s after a quiet poll, want 0", d)
		}
		return time.Since(start)
	}
	for i, want := range []time.Duration{poll, 2 * poll, 4 * poll, quietMax * poll, quietMax * poll} {
		if got := waited(); got < want {
			t.Errorf("quiet poll %d waited %s, want at least %s", i+1, got, want)
		}
	}
	wake <- struct{}{}
	if got := waited(); got >= poll {
		t.Errorf("a notification was waited on for %s", got)
	}
	time.Sleep(eagerWindow) // past the eager re-polls that follow a notification
	// Then the wait grows again from eagerMaxStep: an announced event that is not yet
	// visible (an older transaction is open) is looked for soon, not a poll later.
	if got := waited(); got >= poll {
		t.Errorf("the first quiet poll after a notification waited %s, want about %s", got, eagerMaxStep)
	}
	// Doubling from eagerMaxStep reaches quietMax × poll within a dozen waits and stays.
	for i := 1; waited() < quietMax*poll; i++ {
		if i == 12 {
			t.Fatalf("%d quiet polls after a notification and none waited %s", i, quietMax*poll)
		}
	}
	if got := waited(); got < quietMax*poll {
		t.Errorf("the quiet poll after a %s one waited %s", quietMax*poll, got)
	}
	b.HandleError(nil, false, nil) // a batch arrived: quiet again from eagerMaxStep
	if got := waited(); got >= poll {
		t.Errorf("the first quiet poll after a batch waited %s, want about %s", got, eagerMaxStep)
	}
}
