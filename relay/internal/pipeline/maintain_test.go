package pipeline_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/testutil"
)

// TestPruneRemovesOnlyFinishedRowsOlderThanRetention sets up every kind of row Prune
// meets, ages some of them past the windows, and checks that exactly the finished old
// ones go: with the default event retention (0) no event at all, and with one, the old
// read events without pending work; pending deliveries, their events and events the
// relay has not read yet stay whatever their age.
func TestPruneRemovesOnlyFinishedRowsOlderThanRetention(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	ok := testutil.NewReceiver(t, nil)
	failing := testutil.NewReceiver(t, status(http.StatusInternalServerError))
	all := addWebhook(t, db, "post.*", ok.URL(), "")
	retrying := addWebhook(t, db, "post.published", failing.URL(), "")

	cfg := testConfig(t)
	cfg.Retention = 0                               // the running relay must not prune on its own here
	cfg.Retry.Schedule = []time.Duration{time.Hour} // the failing delivery stays pending
	_, stop := runRelay(t, db, cfg)
	published := emit(t, db, "post.published", map[string]any{}) // -> succeeded (all) + pending (retrying)
	unmatched := emit(t, db, "tag.added", map[string]any{})      // read, no delivery
	recentRead := emit(t, db, "tag.edited", map[string]any{})    // read, no delivery, kept young
	added := emit(t, db, "post.added", map[string]any{})         // -> succeeded (all)
	// Settled, and read: the consumer group's offset has passed all four (an event the
	// relay delivered may still be unacknowledged when its deliveries are recorded).
	testutil.Eventually(t, 10*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'succeeded'`) == 2 &&
			queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'pending' AND attempts = 1`) == 1 &&
			queryInt(t, db, `SELECT count(*) FROM relay.outbox o, relay.outbox_offsets g
				WHERE (o.transaction_id, o."offset") <= (g.last_processed_transaction_id, g.offset_acked)`) == 4
	}, "deliveries did not settle")
	stop()
	// Emitted while no relay runs: committed, but not yet read by the relay.
	unread := emit(t, db, "tag.deleted", map[string]any{})

	// A large finished backlog (with attempts) and one young finished delivery.
	const backlog = 2500 // > 2 × the prune batch: only several bounded batches remove it
	if _, err := db.Pool.Exec(ctx, `
		WITH d AS (
			INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, created_at)
			SELECT gen_random_uuid(), $1, (ARRAY['succeeded','failed','cancelled'])[1 + i % 3], 1, now() - interval '2 hours'
			  FROM generate_series(1, $2) i
			RETURNING id)
		INSERT INTO relay.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
		SELECT id, 1, now() - interval '2 hours', 5, 200 FROM d`, all.ID, backlog); err != nil {
		t.Fatal(err)
	}
	var young int64
	if err := db.Pool.QueryRow(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts)
		VALUES (gen_random_uuid(), $1, 'succeeded', 1) RETURNING id`, all.ID).Scan(&young); err != nil {
		t.Fatal(err)
	}
	// Age everything from the pipeline past the window, except one read event.
	if _, err := db.Pool.Exec(ctx, `UPDATE relay.outbox SET created_at = now() - interval '2 hours' WHERE "uuid" <> $1`, recentRead); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE relay.deliveries SET created_at = now() - interval '2 hours' WHERE id <> $1`, young); err != nil {
		t.Fatal(err)
	}

	pruneCfg := testConfig(t)
	pruneCfg.Retention = time.Hour
	r, err := pipeline.New(db.Pool, pruneCfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	st, err := r.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("pruned %d deliveries and %d events in %v", st.Deliveries, st.Events, time.Since(start).Round(time.Millisecond))

	// Gone: the old finished deliveries (2 from the pipeline + the backlog) with their
	// attempts. Kept: every event, RELAY_EVENT_RETENTION being 0 by default.
	if want := int64(backlog + 2); st.Deliveries != want {
		t.Errorf("pruned %d deliveries, want %d", st.Deliveries, want)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.events`); st.Events != 0 || n != 5 {
		t.Errorf("pruned %d events, %d left; want 0 and all 5 kept by default", st.Events, n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.delivery_attempts a LEFT JOIN relay.deliveries d ON d.id = a.delivery_id WHERE d.id IS NULL`); n != 0 {
		t.Errorf("%d attempts left without their delivery", n)
	}

	// Kept: the pending delivery however old (and its event, which it still needs),
	// the young finished delivery, the young event, and the old unread event.
	if n := queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1 AND status = 'pending' AND event_id = $2`, retrying.ID, published); n != 1 {
		t.Errorf("pending delivery pruned")
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.delivery_attempts a JOIN relay.deliveries d ON d.id = a.delivery_id WHERE d.status = 'pending'`); n != 1 {
		t.Errorf("pending delivery's attempt pruned")
	}
	for name, id := range map[string]string{"event of a pending delivery": published, "young event": recentRead, "unread event": unread} {
		if queryInt(t, db, `SELECT count(*) FROM relay.events WHERE id = $1`, id) != 1 {
			t.Errorf("%s %s was pruned", name, id)
		}
	}
	if queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE id = $1`, young) != 1 {
		t.Errorf("young finished delivery was pruned")
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.deliveries`); n != 2 {
		t.Errorf("%d deliveries left, want 2 (pending + young)", n)
	}

	// A second run finds nothing more.
	if st, err := r.Prune(ctx); err != nil || st.Deliveries != 0 || st.Events != 0 {
		t.Errorf("second prune: %+v %v", st, err)
	}

	// With an event retention, the old read events left without work go.
	pruneCfg.EventRetention = time.Hour
	r, err = pipeline.New(db.Pool, pruneCfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	if st, err = r.Prune(ctx); err != nil || st.Events != 2 || st.Deliveries != 0 {
		t.Errorf("prune with an event retention: %+v %v; want the 2 events %s, %s", st, err, added, unmatched)
	}
	for _, id := range []string{added, unmatched} {
		if queryInt(t, db, `SELECT count(*) FROM relay.events WHERE id = $1`, id) != 0 {
			t.Errorf("old read event %s without pending work was kept", id)
		}
	}
	for name, id := range map[string]string{"event of a pending delivery": published, "young event": recentRead, "unread event": unread} {
		if queryInt(t, db, `SELECT count(*) FROM relay.events WHERE id = $1`, id) != 1 {
			t.Errorf("%s %s was pruned by the event retention", name, id)
		}
	}
}

// TestRunningRelayPrunesWhileDelivering: the periodic prune runs inside a relay that
// keeps delivering, and its short batches never hold a delivery up.
func TestRunningRelayPrunesWhileDelivering(t *testing.T) {
	// Not parallel: it bounds each delivery's latency while pruning.
	db := testutil.NewDB(t)
	ctx := context.Background()
	rc := testutil.NewReceiver(t, nil)
	wh := addWebhook(t, db, "*", rc.URL(), "")
	const backlog = 30000
	if _, err := db.Pool.Exec(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, created_at)
		SELECT gen_random_uuid(), $1, 'succeeded', 1, now() - interval '1 hour' FROM generate_series(1, $2)`, wh.ID, backlog); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Retention = 2 * time.Second // the maintainer then runs every 200ms
	startRelay(t, db, cfg)
	// Events spread over the time the backlog takes to prune.
	const n = 30
	emitted := map[string]time.Time{}
	for i := range n {
		emitted[emit(t, db, "post.added", map[string]any{"n": i})] = time.Now()
		time.Sleep(20 * time.Millisecond)
	}
	var worst time.Duration
	for _, req := range rc.WaitFor(t, n, 10*time.Second) {
		worst = max(worst, req.At.Sub(emitted[req.Header.Get("webhook-id")]))
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE created_at < now() - interval '30 minutes'`) == 0
	}, "the running relay did not prune the old backlog")
	t.Logf("slowest of %d deliveries while pruning %d rows: %v from commit to receiver", n, backlog, worst.Round(time.Millisecond))
	if worst > 2*time.Second {
		t.Errorf("a delivery took %v while the relay pruned", worst)
	}
}

func TestPruneKeepsStripeIdsThroughStripesResendWindow(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO relay.stripe_events (id, type, livemode, received_at, raw) VALUES
		('evt_old', 'charge.refunded', false, now() - interval '100 days', '{}'),
		('evt_within_resend_window', 'charge.refunded', false, now() - interval '2 days', '{}'),
		('evt_new', 'charge.refunded', false, now(), '{}')`); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.Retention = time.Hour // shorter than Stripe's three days of resends
	r, err := pipeline.New(db.Pool, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.StripeEvents != 1 {
		t.Errorf("pruned %d Stripe ids, want 1", st.StripeEvents)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.stripe_events WHERE id IN ('evt_within_resend_window', 'evt_new')`); n != 2 {
		t.Errorf("Stripe ids inside the resend window were pruned")
	}
}
