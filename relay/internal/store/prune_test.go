package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

// logFixture builds an outbox and its history row by row, each row aged as a test needs.
type logFixture struct {
	t        *testing.T
	db       *testutil.DB
	webhooks []string // three '*' webhooks, so that an event can have up to three deliveries
}

func newLogFixture(t *testing.T) *logFixture {
	t.Helper()
	f := &logFixture{t: t, db: testutil.NewDB(t)}
	for i := range 3 {
		f.webhooks = append(f.webhooks, f.text(`INSERT INTO relay.webhooks (event, target_url, created_at)
			VALUES ('*', $1, now() - interval '400 days') RETURNING id`, fmt.Sprintf("https://hooks.example.com/%d", i)))
	}
	return f
}

func (f *logFixture) text(sql string, args ...any) string {
	f.t.Helper()
	var s string
	if err := f.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&s); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func (f *logFixture) count(sql string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// event emits one event as a CMS does and dates it age ago.
func (f *logFixture) event(name string, age time.Duration) string {
	f.t.Helper()
	id := f.text(`SELECT relay.emit($1, '{"post":{"current":{"id":"1"},"previous":{}}}')::text`, name)
	f.text(`UPDATE relay.outbox SET created_at = now() - $2::interval WHERE "uuid" = $1 RETURNING "uuid"`, id, age)
	return id
}

// delivery gives event a delivery to the n-th webhook in status, with one attempt,
// created age ago.
func (f *logFixture) delivery(event string, n int, status store.Status, age time.Duration) string {
	f.t.Helper()
	return f.text(`
		WITH d AS (
			INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, created_at, next_attempt_at)
			VALUES ($1, $2, $3, 1, now() - $4::interval, CASE WHEN $3 = 'pending' THEN now() + interval '1 hour' END)
			RETURNING id, created_at)
		INSERT INTO relay.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code)
		SELECT id, 1, created_at, 5, 200 FROM d RETURNING delivery_id::text`, event, f.webhooks[n], string(status), age)
}

// readAll moves the relay's consumer group past every event emitted so far, as the
// relay's subscriber does when it has read them.
func (f *logFixture) readAll() {
	f.t.Helper()
	f.text(`INSERT INTO relay.outbox_offsets (consumer_group, offset_acked, last_processed_transaction_id)
		SELECT $1, "offset", transaction_id FROM relay.outbox ORDER BY transaction_id DESC, "offset" DESC LIMIT 1
		ON CONFLICT (consumer_group) DO UPDATE
		   SET offset_acked = EXCLUDED.offset_acked, last_processed_transaction_id = EXCLUDED.last_processed_transaction_id
		RETURNING consumer_group`, store.ConsumerGroup)
}

func (f *logFixture) prune(c store.Cutoffs) store.PruneStats {
	f.t.Helper()
	st, err := store.Prune(context.Background(), f.db.Pool, c)
	if err != nil {
		f.t.Fatal(err)
	}
	return st
}

func (f *logFixture) eventKept(id string) bool {
	f.t.Helper()
	return f.count(`SELECT count(*) FROM relay.events WHERE id = $1`, id) == 1
}

func (f *logFixture) deliveryKept(id string) bool {
	f.t.Helper()
	return f.count(`SELECT count(*) FROM relay.deliveries WHERE id = $1::bigint`, id) == 1
}

const day = 24 * time.Hour

// With no event cutoff (RELAY_EVENT_RETENTION=0, the default), every event stays,
// however old, while the finished deliveries past their own cutoff go, attempts and
// all: the log outlives the delivery history.
func TestPruneKeepsEveryEventWithoutAnEventCutoff(t *testing.T) {
	t.Parallel()
	f := newLogFixture(t)
	ancient := f.event("post.published", 300*day)
	delivered := f.delivery(ancient, 0, store.Succeeded, 300*day)
	gaveUp := f.delivery(ancient, 1, store.Failed, 300*day)
	unmatched := f.event("tag.added", 300*day)
	recent := f.event("post.edited", time.Hour)
	recentDelivery := f.delivery(recent, 0, store.Succeeded, time.Hour)
	f.readAll()

	now := time.Now()
	st := f.prune(store.Cutoffs{Deliveries: now.Add(-30 * day), StripeIDs: now.Add(-30 * day)})
	if st.Events != 0 || st.Deliveries != 2 {
		t.Errorf("pruned %d events and %d deliveries, want 0 and 2", st.Events, st.Deliveries)
	}
	for _, id := range []string{ancient, unmatched, recent} {
		if !f.eventKept(id) {
			t.Errorf("event %s pruned without an event cutoff", id)
		}
	}
	if f.deliveryKept(delivered) || f.deliveryKept(gaveUp) || !f.deliveryKept(recentDelivery) {
		t.Errorf("deliveries kept: old succeeded %v, old failed %v, recent %v; want false, false, true",
			f.deliveryKept(delivered), f.deliveryKept(gaveUp), f.deliveryKept(recentDelivery))
	}
	if n := f.count(`SELECT count(*) FROM relay.delivery_attempts`); n != 1 {
		t.Errorf("%d attempts left, want the recent delivery's 1", n)
	}
}

// With an event cutoff, an old event the relays have read and that has nothing left
// to do goes, and its finished deliveries go with it even when they are younger than
// the delivery cutoff (a delivery means nothing without its event). Young events and
// unread ones stay, whatever else.
func TestPruneRemovesOldReadEventsWithTheirFinishedDeliveries(t *testing.T) {
	t.Parallel()
	f := newLogFixture(t)
	noWork := f.event("tag.added", 100*day)
	done := f.event("post.published", 100*day)
	succeeded := f.delivery(done, 0, store.Succeeded, 99*day)
	cancelled := f.delivery(done, 1, store.Cancelled, 99*day)
	young := f.event("post.edited", 10*day)
	youngDelivery := f.delivery(young, 0, store.Succeeded, 10*day)
	f.readAll()
	unread := f.event("post.deleted", 100*day)

	st := f.prune(store.Cutoffs{Events: time.Now().Add(-90 * day)})
	if st.Events != 2 || st.Deliveries != 2 {
		t.Errorf("pruned %d events and %d deliveries, want 2 and 2", st.Events, st.Deliveries)
	}
	if f.eventKept(noWork) || f.eventKept(done) {
		t.Errorf("old read events kept: without deliveries %v, with finished ones %v", f.eventKept(noWork), f.eventKept(done))
	}
	if f.deliveryKept(succeeded) || f.deliveryKept(cancelled) {
		t.Errorf("the pruned event's deliveries were kept")
	}
	if n := f.count(`SELECT count(*) FROM relay.delivery_attempts a
		LEFT JOIN relay.deliveries d ON d.id = a.delivery_id WHERE d.id IS NULL`); n != 0 {
		t.Errorf("%d attempts left without their delivery", n)
	}
	if !f.eventKept(young) || !f.deliveryKept(youngDelivery) {
		t.Errorf("a young event or its delivery was pruned")
	}
	if !f.eventKept(unread) {
		t.Errorf("an event the relays have not read was pruned")
	}
	if st := f.prune(store.Cutoffs{Events: time.Now().Add(-90 * day)}); st != (store.PruneStats{}) {
		t.Errorf("a second prune removed %+v", st)
	}
}

// An event with a pending delivery (work to do) or a failed one (which may be
// redelivered, and that needs the body) is never pruned, nor any of its deliveries
// through it, however old; its failed delivery goes by the delivery cutoff, and then
// the event may go.
func TestPruneNeverRemovesAnEventWithPendingOrFailedWork(t *testing.T) {
	t.Parallel()
	f := newLogFixture(t)
	retrying := f.event("post.published", 200*day)
	pending := f.delivery(retrying, 0, store.Pending, 200*day)
	gaveUp := f.event("post.unpublished", 200*day)
	failed := f.delivery(gaveUp, 0, store.Failed, 200*day)
	deliveredBeside := f.delivery(gaveUp, 1, store.Succeeded, 200*day)
	f.readAll()

	st := f.prune(store.Cutoffs{Events: time.Now().Add(-time.Hour)})
	if st.Events != 0 || st.Deliveries != 0 {
		t.Errorf("pruned %d events and %d deliveries, want none", st.Events, st.Deliveries)
	}
	for _, id := range []string{retrying, gaveUp} {
		if !f.eventKept(id) {
			t.Errorf("event %s with pending or failed work was pruned", id)
		}
	}
	for _, id := range []string{pending, failed, deliveredBeside} {
		if !f.deliveryKept(id) {
			t.Errorf("delivery %s of a kept event was pruned through it", id)
		}
	}

	// The delivery cutoff removes the finished ones (the failed one included); the
	// event with nothing left to do then goes, the pending one's stays.
	now := time.Now()
	st = f.prune(store.Cutoffs{Deliveries: now.Add(-100 * day), Events: now.Add(-time.Hour)})
	if st.Deliveries != 2 || st.Events != 1 || f.eventKept(gaveUp) || !f.eventKept(retrying) || !f.deliveryKept(pending) {
		t.Errorf("after the delivery cutoff: pruned %+v; failed event kept %v, pending event kept %v, pending delivery kept %v",
			st, f.eventKept(gaveUp), f.eventKept(retrying), f.deliveryKept(pending))
	}
}

// A redelivery that commits while Prune is removing the event's finished deliveries
// wins: Prune waits for its row, sees it pending again, and keeps the delivery and the
// event (a pending delivery without its event could never be sent).
func TestPruneKeepsAnEventRedeliveredWhileItIsPruned(t *testing.T) {
	t.Parallel()
	f := newLogFixture(t)
	ctx := context.Background()
	ev := f.event("post.published", 100*day)
	d := f.delivery(ev, 0, store.Succeeded, 100*day)
	f.readAll()

	redeliver, err := f.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = redeliver.Rollback(ctx) }()
	if _, err := redeliver.Exec(ctx, `UPDATE relay.deliveries SET status = 'pending', next_attempt_at = now() WHERE id = $1::bigint`, d); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct {
		st  store.PruneStats
		err error
	}, 1)
	go func() {
		st, err := store.Prune(ctx, f.db.Pool, store.Cutoffs{Events: time.Now().Add(-time.Hour)})
		done <- struct {
			st  store.PruneStats
			err error
		}{st, err}
	}()
	// Prune read the delivery as succeeded and now waits for the redelivery's row lock.
	testutil.Eventually(t, 10*time.Second, func() bool {
		return f.count(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 1
	}, "prune did not wait for the redelivered row")
	if err := redeliver.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	got := <-done
	if got.err != nil {
		t.Fatal(got.err)
	}
	if got.st.Events != 0 || got.st.Deliveries != 0 || !f.eventKept(ev) || !f.deliveryKept(d) {
		t.Errorf("pruned %+v; event kept %v, delivery kept %v; want both kept", got.st, f.eventKept(ev), f.deliveryKept(d))
	}
}

// Whoever creates deliveries for old events (a replay) reads them FOR KEY SHARE; Prune
// skips an event held so, and removes it in a later pass once it is free.
func TestPruneSkipsAnEventAWriterHolds(t *testing.T) {
	t.Parallel()
	f := newLogFixture(t)
	ctx := context.Background()
	held := f.event("post.published", 100*day)
	free := f.event("post.edited", 100*day)
	f.readAll()

	err := pgx.BeginFunc(ctx, f.db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM relay.outbox WHERE "uuid" = $1 FOR KEY SHARE`, held); err != nil {
			return err
		}
		// Bounded: a prune that waited for the held row would wait for this very test.
		pruneCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		st, err := store.Prune(pruneCtx, f.db.Pool, store.Cutoffs{Events: time.Now().Add(-time.Hour)})
		if err != nil {
			return err
		}
		if st.Events != 1 || !f.eventKept(held) || f.eventKept(free) {
			t.Errorf("while one event is held: pruned %+v, held kept %v, free kept %v", st, f.eventKept(held), f.eventKept(free))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := f.prune(store.Cutoffs{Events: time.Now().Add(-time.Hour)}); st.Events != 1 || f.eventKept(held) {
		t.Errorf("once free: pruned %+v, held event kept %v", st, f.eventKept(held))
	}
}

// A failed delivery of an ordered webhook holds its key's later deliveries until it is
// redelivered or skipped, so the delivery cutoff leaves it, and its event, alone; a
// skipped one is finished and goes like any other.
func TestPruneKeepsAFailedDeliveryThatHoldsItsKey(t *testing.T) {
	t.Parallel()
	f := newLogFixture(t)
	holding := f.event("post.published", 100*day)
	holder := f.delivery(holding, 0, store.Failed, 100*day)
	passed := f.event("post.edited", 100*day)
	skipped := f.delivery(passed, 0, store.Skipped, 100*day)
	unordered := f.event("post.unpublished", 100*day)
	gaveUp := f.delivery(unordered, 0, store.Failed, 100*day)
	f.text(`UPDATE relay.deliveries SET ordering_key = '1' WHERE id IN ($1::bigint, $2::bigint) RETURNING 'ok'`, holder, skipped)
	f.readAll()

	now := time.Now()
	st := f.prune(store.Cutoffs{Deliveries: now.Add(-30 * day), Events: now.Add(-30 * day)})
	if !f.deliveryKept(holder) || !f.eventKept(holding) {
		t.Errorf("the failed delivery holding its key (kept %v) or its event (kept %v) was pruned", f.deliveryKept(holder), f.eventKept(holding))
	}
	if f.deliveryKept(skipped) || f.deliveryKept(gaveUp) || f.eventKept(passed) || f.eventKept(unordered) {
		t.Errorf("finished work kept: skipped %v, unordered failed %v, their events %v %v",
			f.deliveryKept(skipped), f.deliveryKept(gaveUp), f.eventKept(passed), f.eventKept(unordered))
	}
	if st.Deliveries != 2 || st.Events != 2 {
		t.Errorf("pruned %+v, want 2 deliveries and 2 events", st)
	}
}

// The delivery cutoff finds old finished deliveries webhook by webhook, including
// those of webhooks deleted since (their history stays until it is old enough), and
// across more than one batch.
func TestPruneFindsOldDeliveriesOfEveryWebhookDeletedOrNot(t *testing.T) {
	t.Parallel()
	f := newLogFixture(t)
	ctx := context.Background()
	ev := f.event("post.published", 100*day)
	young := f.delivery(ev, 2, store.Succeeded, day)
	if _, err := f.db.Pool.Exec(ctx, `
		INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, created_at)
		SELECT gen_random_uuid(), w, 'succeeded', 1, now() - interval '100 days'
		  FROM unnest($1::text[]) AS w, generate_series(1, 700)`,
		[]string{f.webhooks[0], f.webhooks[1], "0123456789abcdef01234567"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Pool.Exec(ctx, `DELETE FROM relay.webhooks WHERE id = $1`, f.webhooks[1]); err != nil {
		t.Fatal(err)
	}
	st := f.prune(store.Cutoffs{Deliveries: time.Now().Add(-30 * day)})
	if st.Deliveries != 2100 || f.count(`SELECT count(*) FROM relay.deliveries`) != 1 || !f.deliveryKept(young) {
		t.Errorf("pruned %d deliveries, %d left; want 2100 and the young one", st.Deliveries, f.count(`SELECT count(*) FROM relay.deliveries`))
	}
}
