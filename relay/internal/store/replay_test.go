package store_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/invalid"
	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

// replayEnv is a database with events written "in the past" (their created_at moved
// back), as a kept log holds them.
type replayEnv struct {
	t  *testing.T
	db *testutil.DB
}

func newReplayEnv(t *testing.T) *replayEnv {
	t.Helper()
	return &replayEnv{t: t, db: testutil.NewDB(t)}
}

// webhook adds an active webhook for pattern, created now.
func (e *replayEnv) webhook(pattern string, ordered bool) string {
	e.t.Helper()
	var id string
	if err := e.db.Pool.QueryRow(context.Background(), `INSERT INTO relay.webhooks (event, target_url, ordered)
		VALUES ($1, 'http://127.0.0.1:1/', $2) RETURNING id`, pattern, ordered).Scan(&id); err != nil {
		e.t.Fatal(err)
	}
	return id
}

// emit writes n events named event about post, created ago, in one transaction, and
// returns their ids in commit order.
func (e *replayEnv) emit(event, post string, ago time.Duration, n int) []string {
	e.t.Helper()
	ctx := context.Background()
	tx, err := e.db.Pool.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	ids := make([]string, n)
	for i := range ids {
		if err := tx.QueryRow(ctx, `SELECT relay.emit($1, $2::text)::text`, event,
			fmt.Sprintf(`{"post":{"current":{"id":%q}}}`, post)).Scan(&ids[i]); err != nil {
			e.t.Fatal(err)
		}
	}
	if _, err := tx.Exec(ctx, `UPDATE relay.outbox SET created_at = now() - $2::interval WHERE "uuid"::uuid = ANY($1::uuid[])`, ids, ago); err != nil {
		e.t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// ackAll moves the consumer group to the last event, as if the fan-out had read it all.
func (e *replayEnv) ackAll() {
	e.t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), `
		INSERT INTO relay.outbox_offsets (consumer_group, offset_acked, last_processed_transaction_id)
		SELECT $1, "offset", transaction_id FROM relay.outbox ORDER BY transaction_id DESC, "offset" DESC LIMIT 1
		ON CONFLICT (consumer_group) DO UPDATE SET offset_acked = EXCLUDED.offset_acked,
		       last_processed_transaction_id = EXCLUDED.last_processed_transaction_id`, store.ConsumerGroup); err != nil {
		e.t.Fatal(err)
	}
}

// run steps replay id until it finishes or waits, and returns the last step.
func (e *replayEnv) run(id int64) store.Stepped {
	e.t.Helper()
	for i := 0; i < 1000; i++ {
		st, err := store.ReplayStep(context.Background(), e.db.Pool, id, 1_000_000)
		if err != nil {
			e.t.Fatal(err)
		}
		if st.Finished || st.Waiting || st.Busy {
			return st
		}
	}
	e.t.Fatal("the replay neither finished nor waited after 1000 steps")
	return store.Stepped{}
}

// finish steps replay id until it finishes (waiting for other sessions' transactions
// in the cluster to end: the replay's horizon).
func (e *replayEnv) finish(id int64) store.Replay {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !e.run(id).Finished {
		if time.Now().After(deadline) {
			e.t.Fatal("the replay did not finish in 20s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r, err := store.GetReplay(context.Background(), e.db.Pool, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *replayEnv) replay(req store.ReplayRequest) store.Replay {
	e.t.Helper()
	if req.RequestedBy == "" {
		req.RequestedBy = "test"
	}
	r, err := store.CreateReplay(context.Background(), e.db.Pool, req)
	if err != nil {
		e.t.Fatal(err)
	}
	return r
}

func (e *replayEnv) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// A replay creates a delivery for every event of its window the webhook matches, events
// from before the webhook existed included; never a second one for a pair that has one;
// and it counts what it created, found existing and skipped.
func TestReplayCreatesTheMissingDeliveriesOfItsWindow(t *testing.T) {
	t.Parallel()
	e := newReplayEnv(t)
	ctx := context.Background()
	posts := e.emit("post.published", "p1", 10*day, 5)
	e.emit("tag.added", "p1", 10*day, 2)
	e.emit("post.published", "p1", 40*day, 3) // before the window
	hook := e.webhook("post.*", false)
	other := e.webhook("*", false)
	// One pair delivered already (say, by an earlier replay).
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts)
		VALUES ($1, $2, 'succeeded', 1)`, posts[0], hook); err != nil {
		t.Fatal(err)
	}
	e.ackAll()

	r := e.finish(e.replay(store.ReplayRequest{WebhookID: hook, Since: time.Now().Add(-30 * day)}).ID)
	if r.Status != "done" || r.Created != 4 || r.Existing != 1 || r.Skipped != 2 || r.Scanned != 7 || r.Pending != 4 {
		t.Errorf("replay %+v; want done, 4 created, 1 existing, 2 skipped of 7", r)
	}
	if n := e.count(`SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1 AND replay_id = $2
		AND status = 'pending' AND next_attempt_at IS NOT NULL AND NOT sign_stripe`, hook, r.ID); n != 4 {
		t.Errorf("%d due deliveries from the replay, want 4 (unsigned for Stripe, as a redelivery)", n)
	}
	if n := e.count(`SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1`, other); n != 0 {
		t.Errorf("the other webhook got %d deliveries", n)
	}

	// Again: nothing new.
	again := e.finish(e.replay(store.ReplayRequest{WebhookID: hook, Since: time.Now().Add(-30 * day)}).ID)
	if again.Created != 0 || again.Existing != 5 {
		t.Errorf("second replay %+v; want 0 created, 5 existing", again)
	}
	if n := e.count(`SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1`, hook); n != 5 {
		t.Errorf("%d deliveries after two replays, want 5: one per pair", n)
	}

	// An event filter, and an until: only tag.added, only from the older half.
	narrow := e.finish(e.replay(store.ReplayRequest{WebhookID: other, Since: time.Now().Add(-50 * day),
		Until: time.Now().Add(-5 * day), EventPattern: "tag.*"}).ID)
	if narrow.Created != 2 || narrow.Skipped != 8 {
		t.Errorf("filtered replay %+v; want the 2 tag events created, the 8 post events skipped", narrow)
	}
}

// Bad requests are refused in words; a replay asks for an active webhook.
func TestReplayRefusesBadRequests(t *testing.T) {
	t.Parallel()
	e := newReplayEnv(t)
	ctx := context.Background()
	hook := e.webhook("post.*", false)
	now := time.Now()
	for _, c := range []struct {
		req   store.ReplayRequest
		field string
	}{
		{store.ReplayRequest{WebhookID: hook}, "since"},
		{store.ReplayRequest{WebhookID: hook, Since: now, Until: now.Add(-time.Hour)}, "until"},
		{store.ReplayRequest{WebhookID: hook, Since: now.Add(-time.Hour), EventPattern: "post.nonsense"}, "event"},
		{store.ReplayRequest{WebhookID: hook, Since: now.Add(-time.Hour), EventPattern: "'; DROP TABLE relay.outbox; --"}, "event"},
	} {
		_, err := store.CreateReplay(ctx, e.db.Pool, c.req)
		var inv *invalid.Error
		if !errors.As(err, &inv) || inv.Field != c.field {
			t.Errorf("%+v: %v, want an invalid %s", c.req, err, c.field)
		}
	}
	if _, err := store.CreateReplay(ctx, e.db.Pool, store.ReplayRequest{WebhookID: "0123456789abcdef01234567", Since: now}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown webhook: %v", err)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE relay.webhooks SET status = 'disabled' WHERE id = $1`, hook); err != nil {
		t.Fatal(err)
	}
	if _, err := store.CreateReplay(ctx, e.db.Pool, store.ReplayRequest{WebhookID: hook, Since: now}); !errors.Is(err, store.ErrWebhookInactive) {
		t.Errorf("disabled webhook: %v", err)
	}
}

// A replay yields: it waits while it has ReplayPending deliveries pending, never reads
// past what the fan-out has read, and does not finish while a transaction that started
// before it may still add an event to its window.
func TestReplayWaitsForItsDeliveriesTheFanOutAndOpenTransactions(t *testing.T) {
	t.Parallel()
	e := newReplayEnv(t)
	ctx := context.Background()
	e.emit("post.published", "p1", day, store.ReplayPending+500)
	hook := e.webhook("post.*", false)
	e.ackAll()

	// A CMS transaction open across the replay's creation, its event written after.
	late, err := e.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback(ctx) //nolint:errcheck
	if _, err := late.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	r := e.replay(store.ReplayRequest{WebhookID: hook, Since: time.Now().Add(-2 * day)})
	var lateID string
	if err := late.QueryRow(ctx, `SELECT relay.emit('post.published', '{}')::text`).Scan(&lateID); err != nil {
		t.Fatal(err)
	}

	st := e.run(r.ID)
	if !st.Waiting || st.Finished {
		t.Fatalf("step %+v with %d pending; want it waiting", st, store.ReplayPending)
	}
	if n := e.count(`SELECT count(*) FROM relay.deliveries WHERE replay_id = $1`, r.ID); n != store.ReplayPending {
		t.Fatalf("%d deliveries created, want the first %d", n, store.ReplayPending)
	}
	// Half of them delivered: the next batch takes that many more.
	if _, err := e.db.Pool.Exec(ctx, `UPDATE relay.deliveries SET status = 'succeeded', next_attempt_at = NULL
		WHERE id IN (SELECT id FROM relay.deliveries WHERE replay_id = $1 ORDER BY id LIMIT 1000)`, r.ID); err != nil {
		t.Fatal(err)
	}
	if st := e.run(r.ID); !st.Waiting || st.Finished {
		t.Fatalf("step %+v; want waiting for the open transaction", st)
	}
	if n := e.count(`SELECT count(*) FROM relay.deliveries WHERE replay_id = $1`, r.ID); n != store.ReplayPending+500 {
		t.Fatalf("%d deliveries created, want all %d", n, store.ReplayPending+500)
	}
	// The late event commits; until the fan-out has read it, the replay waits for it.
	if err := late.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	if st := e.run(r.ID); st.Finished {
		t.Fatalf("the replay finished before the fan-out read the late event")
	}
	e.ackAll()
	done := e.finish(r.ID)
	// The late event is in the window (its created_at is its transaction's start, before
	// the replay), so the replay has it too.
	if done.Created != int64(store.ReplayPending+501) {
		t.Errorf("replay %+v, want all %d events", done, store.ReplayPending+501)
	}
	if n := e.count(`SELECT count(*) FROM relay.deliveries WHERE event_id = $1::uuid`, lateID); n != 1 {
		t.Errorf("%d deliveries of the late event, want 1", n)
	}
}

// An ordered webhook gets each key's history before the key's live events: while the
// replay runs, live deliveries wait behind its position; history of a key goes one at
// a time in commit order; at the end every held key is let go.
func TestOrderedReplayDeliversHistoryBeforeLiveEvents(t *testing.T) {
	t.Parallel()
	f := newOrderedFixture(t)
	e := &replayEnv{t: t, db: f.db}
	histA := e.emit("post.published", "A", 3*day, 3)
	histB := e.emit("post.published", "B", 3*day, 1)
	e.ackAll()
	r := e.replay(store.ReplayRequest{WebhookID: f.ordered, Since: time.Now().Add(-7 * day)})

	// Live events while the replay has not started: held behind its fence.
	liveA, liveC := f.emit("A"), f.emit("C")
	f.fanOut(liveA)
	e.ackAll()
	f.want(map[string]string{liveA: "held", liveC: "held"})

	for i := 0; ; i++ {
		st := e.run(r.ID)
		if st.Finished {
			break
		}
		if i > 100 {
			t.Fatal("replay did not finish")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// History goes first: A's first and B's; A's others and the live ones wait.
	f.want(map[string]string{histA[0]: "due", histA[1]: "held", histA[2]: "held", histB[0]: "due", liveA: "held", liveC: "due"})

	var order []string
	for len(order) < 4 {
		got := f.claim()
		if len(got) == 0 {
			t.Fatalf("nothing due after %v; state %v", order, f.state())
		}
		for _, c := range got {
			if c.OrderingKey == "A" {
				order = append(order, c.EventID)
			}
			f.record(c, store.Succeeded)
		}
	}
	want := append(append([]string{}, histA...), liveA)
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Errorf("key A delivered in the order %v, want history then live %v", order, want)
	}
}

// A replay stops when its webhook is disabled, and can be cancelled; what it created
// stays.
func TestReplayCancelled(t *testing.T) {
	t.Parallel()
	e := newReplayEnv(t)
	ctx := context.Background()
	e.emit("post.published", "p1", day, store.ReplayPending+1)
	hook := e.webhook("post.*", true)
	e.ackAll()
	r := e.replay(store.ReplayRequest{WebhookID: hook, Since: time.Now().Add(-2 * day)})
	if st := e.run(r.ID); !st.Waiting {
		t.Fatalf("step %+v, want waiting", st)
	}
	got, err := store.CancelReplay(ctx, e.db.Pool, r.ID, "asked")
	if err != nil || got.Status != "cancelled" || got.Created != int64(store.ReplayPending) {
		t.Fatalf("cancel: %+v %v", got, err)
	}
	if _, err := store.CancelReplay(ctx, e.db.Pool, r.ID, "again"); !errors.Is(err, store.ErrReplayFinished) {
		t.Errorf("second cancel: %v", err)
	}
	if n := e.count(`SELECT count(*) FROM relay.webhooks WHERE id = $1 AND replay_fence_tx IS NULL`, hook); n != 1 {
		t.Error("the fence stayed up after the replay was cancelled")
	}

	r2 := e.replay(store.ReplayRequest{WebhookID: hook, Since: time.Now().Add(-2 * day)})
	if _, _, err := store.DisableWebhook(ctx, e.db.Pool, hook, "test", 0); err != nil {
		t.Fatal(err)
	}
	if st := e.run(r2.ID); !st.Finished {
		t.Fatalf("step %+v after the webhook was disabled, want finished", st)
	}
	if got, _ := store.GetReplay(ctx, e.db.Pool, r2.ID); got.Status != "cancelled" || got.Reason == nil {
		t.Errorf("replay of a disabled webhook: %+v", got)
	}
}
