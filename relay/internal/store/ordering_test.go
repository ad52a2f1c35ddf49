package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

// orderedFixture is a database with an ordered and an unordered webhook for post.*.
type orderedFixture struct {
	t                  *testing.T
	db                 *testutil.DB
	ordered, unordered string
}

func newOrderedFixture(t *testing.T) *orderedFixture {
	t.Helper()
	f := &orderedFixture{t: t, db: testutil.NewDB(t)}
	for _, w := range []struct {
		id      *string
		ordered bool
	}{{&f.ordered, true}, {&f.unordered, false}} {
		if err := f.db.Pool.QueryRow(context.Background(), `INSERT INTO relay.webhooks (event, target_url, ordered, created_at)
			VALUES ('post.*', 'http://127.0.0.1:1/' || $1::boolean::text, $1::boolean, now() - interval '1 hour') RETURNING id`, w.ordered).Scan(w.id); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// emit writes one post.published event about post, in a transaction of its own, and
// returns its id.
func (f *orderedFixture) emit(post string) string {
	f.t.Helper()
	var id string
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT relay.emit('post.published', $1::text)::text`,
		fmt.Sprintf(`{"post":{"current":{"id":%q,"title":"t"},"previous":{}}}`, post)).Scan(&id); err != nil {
		f.t.Fatal(err)
	}
	return id
}

// fanOut fans out everything from event on, leasing what it may to "me". It waits for
// the event to be visible: a transaction open anywhere in the cluster (another test's)
// holds it back, as it holds back the outbox reader.
func (f *orderedFixture) fanOut(from string) []store.Claimed {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	// Every event written so far must be visible, not just the first: a fan-out stops at
	// the oldest transaction open in the cluster.
	for {
		var visible bool
		if err := f.db.Pool.QueryRow(context.Background(), `SELECT NOT EXISTS (SELECT 1 FROM relay.outbox
			WHERE transaction_id >= pg_snapshot_xmin(pg_current_snapshot()))`).Scan(&visible); err != nil {
			f.t.Fatal(err)
		}
		if visible {
			break
		}
		if time.Now().After(deadline) {
			f.t.Fatal("events not visible after 10s: a transaction is open somewhere in the cluster")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for {
		out, err := store.FanOut(context.Background(), f.db.Pool, store.FanOutRequest{
			EventID: from, Events: 100, Owner: "me", Lease: time.Minute, DefaultRoom: 100, Limit: 1000})
		if err == nil {
			// The second look the pipeline gives what a fan-out held.
			if len(out.Held) > 0 {
				if _, _, err := store.ReleaseNext(context.Background(), f.db.Pool, out.Held, "me", store.Next{}); err != nil {
					f.t.Fatal(err)
				}
			}
			return out.Leased
		}
		if !strings.HasSuffix(err.Error(), "not yet visible") || time.Now().After(deadline) {
			f.t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// claim takes every due delivery of the ordered webhook.
func (f *orderedFixture) claim() []store.Claimed {
	f.t.Helper()
	got, err := store.Claim(context.Background(), f.db.Pool, store.ClaimRequest{
		Owner: "me", Limit: 100, DefaultRoom: 0, Room: map[string]int{f.ordered: 100}, Lease: time.Minute})
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

func (f *orderedFixture) record(c store.Claimed, st store.Status) {
	f.t.Helper()
	f.recordLeasing(c, st, store.Next{})
}

// recordLeasing records c's outcome and returns what the record leased as next says.
func (f *orderedFixture) recordLeasing(c store.Claimed, st store.Status, next store.Next) []store.Claimed {
	f.t.Helper()
	out := store.Outcome{Lease: c.Lease, Started: time.Now(), Status: st, Keyed: c.OrderingKey != ""}
	if st == store.Succeeded {
		out.StatusCode = 200
	} else {
		out.StatusCode, out.Error = 500, "HTTP 500"
	}
	got, err := store.Record(context.Background(), f.db.Pool, "me", []store.Outcome{out}, next)
	if err != nil || !got.IDs[c.ID] {
		f.t.Fatalf("record %d: %v (%v)", c.ID, got.IDs, err)
	}
	// The second look the pipeline gives a record of an ordered key.
	if _, _, err := store.ReleaseNext(context.Background(), f.db.Pool, []int64{c.ID}, "me", store.Next{}); err != nil {
		f.t.Fatal(err)
	}
	return got.Leased
}

// state is every delivery of the ordered webhook by event id: "due", "held", or its
// finished status.
func (f *orderedFixture) state() map[string]string {
	f.t.Helper()
	rows, err := f.db.Pool.Query(context.Background(), `SELECT event_id::text,
		CASE WHEN status <> 'pending' THEN status WHEN next_attempt_at IS NULL THEN 'held' ELSE 'due' END
		FROM relay.deliveries WHERE webhook_id = $1`, f.ordered)
	if err != nil {
		f.t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			f.t.Fatal(err)
		}
		out[id] = st
	}
	if err := rows.Err(); err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *orderedFixture) want(want map[string]string) {
	f.t.Helper()
	got := f.state()
	for id, w := range want {
		if got[id] != w {
			f.t.Errorf("delivery of %s is %q, want %q (all: %v)", id, got[id], w, got)
		}
	}
}

func ofWebhook(cs []store.Claimed, webhook string) []store.Claimed {
	var out []store.Claimed
	for _, c := range cs {
		if c.WebhookID == webhook {
			out = append(out, c)
		}
	}
	return out
}

// One key's deliveries go one at a time in commit order; other keys, events without a
// key and the unordered webhook are not held; a failure holds only its key until it is
// skipped; a redelivery waits its turn; and a webhook made unordered lets everything go.
func TestOrderedWebhookDeliversEachKeyOneAtATime(t *testing.T) {
	t.Parallel()
	f := newOrderedFixture(t)
	ctx := context.Background()
	a1, b1, a2, a3, b2 := f.emit("A"), f.emit("B"), f.emit("A"), f.emit("A"), f.emit("B")
	var none string
	if err := f.db.Pool.QueryRow(ctx, `SELECT relay.emit('post.published', '{}')::text`).Scan(&none); err != nil {
		t.Fatal(err)
	}

	leased := f.fanOut(a1)
	if n := len(ofWebhook(leased, f.unordered)); n != 6 {
		t.Errorf("the unordered webhook got %d deliveries leased at once, want all 6", n)
	}
	first := ofWebhook(leased, f.ordered)
	if len(first) != 3 || first[0].EventID != a1 || first[1].EventID != b1 || first[2].EventID != none {
		t.Fatalf("ordered webhook: leased %v, want the first of A, the first of B and the keyless event", eventIDs(first))
	}
	if first[0].OrderingKey != "A" || first[1].OrderingKey != "B" || first[2].OrderingKey != "" {
		t.Errorf("keys %q %q %q, want A B and none", first[0].OrderingKey, first[1].OrderingKey, first[2].OrderingKey)
	}
	f.want(map[string]string{a1: "due", b1: "due", a2: "held", a3: "held", b2: "held", none: "due"})
	if got := f.claim(); len(got) != 0 {
		t.Errorf("claimed %v while each key's first is leased; want nothing", eventIDs(got))
	}

	// A1 succeeds: A2 goes, A3 and B2 stay held.
	f.record(first[0], store.Succeeded)
	f.want(map[string]string{a1: "succeeded", a2: "due", a3: "held", b2: "held"})
	next := f.claim()
	if len(next) != 1 || next[0].EventID != a2 {
		t.Fatalf("claimed %v, want A2 only", eventIDs(next))
	}
	// A2 fails for good: A3 stays held, B goes on: B2 leased to the relay that recorded
	// B1, which sends it without a claim.
	f.record(next[0], store.Failed)
	b2c := f.recordLeasing(first[1], store.Succeeded, store.Next{Limit: 10, Lease: time.Minute})
	if len(b2c) != 1 || b2c[0].EventID != b2 || b2c[0].OrderingKey != "B" || len(b2c[0].Body) == 0 || b2c[0].TargetURL == "" {
		t.Fatalf("the record leased %+v, want B2 with what its attempt needs", b2c)
	}
	f.want(map[string]string{a2: "failed", a3: "held", b2: "due"})

	// Skipping A2 lets A3 go.
	if n, err := store.Skip(ctx, f.db.Pool, next[0].ID); err != nil || n != 1 {
		t.Fatalf("skip: released %d, %v; want 1", n, err)
	}
	f.want(map[string]string{a2: "skipped", a3: "due"})
	if _, err := store.Skip(ctx, f.db.Pool, next[0].ID); !errors.Is(err, store.ErrNotFailed) {
		t.Errorf("skipping a skipped delivery: %v, want ErrNotFailed", err)
	}
	if _, err := store.Skip(ctx, f.db.Pool, 1<<40); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("skipping no delivery: %v, want ErrNotFound", err)
	}

	// A1 redelivered while A3 is under way waits for it, then goes.
	if _, err := store.Redeliver(ctx, f.db.Pool, store.Selection{EventID: a1}); err != nil {
		t.Fatal(err)
	}
	f.want(map[string]string{a1: "held", a3: "due"})
	a3c := f.claim()
	if len(a3c) != 1 || a3c[0].EventID != a3 {
		t.Fatalf("claimed %v, want A3 (B2 is leased)", eventIDs(a3c))
	}
	for _, c := range a3c {
		if c.EventID == a3 {
			f.record(c, store.Succeeded)
		}
	}
	f.want(map[string]string{a1: "due"})

	// More of A behind a retry, then the webhook made unordered: all of them go.
	a4, a5 := f.emit("A"), f.emit("A")
	f.fanOut(a4)
	f.want(map[string]string{a4: "held", a5: "held"})
	if _, err := f.db.Pool.Exec(ctx, `UPDATE relay.webhooks SET ordered = false WHERE id = $1`, f.ordered); err != nil {
		t.Fatal(err)
	}
	f.want(map[string]string{a1: "due", a4: "due", a5: "due"})
}

func eventIDs(cs []store.Claimed) []string {
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.EventID
	}
	return ids
}

// A skip's record (the console's, of who skipped) runs in the skip's transaction: it
// sees the delivery skipped and the key let go, commits with them, and when it fails,
// nothing is skipped and the key stays held.
func TestSkipRecordedCommitsOrRollsBackWithItsRecord(t *testing.T) {
	t.Parallel()
	f := newOrderedFixture(t)
	ctx := context.Background()
	a1, a2 := f.emit("A"), f.emit("A")
	first := ofWebhook(f.fanOut(a1), f.ordered)
	if len(first) != 1 || first[0].EventID != a1 {
		t.Fatalf("leased %v, want A1", eventIDs(first))
	}
	f.record(first[0], store.Failed)
	f.want(map[string]string{a1: "failed", a2: "held"})

	refused := errors.New("the record could not be written")
	_, err := store.SkipRecorded(ctx, f.db.Pool, first[0].ID, func(pgx.Tx) error { return refused })
	if !errors.Is(err, refused) {
		t.Fatalf("skip with a failing record: %v, want its error", err)
	}
	f.want(map[string]string{a1: "failed", a2: "held"})

	var seen string
	n, err := store.SkipRecorded(ctx, f.db.Pool, first[0].ID, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT string_agg(status || coalesce(next_attempt_at::text, '-'), ' ' ORDER BY id)
			FROM relay.deliveries WHERE webhook_id = $1`, f.ordered).Scan(&seen); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE relay.deliveries SET last_error = 'recorded' WHERE id = $1`, first[0].ID)
		return err
	})
	if err != nil || n != 1 {
		t.Fatalf("skip: released %d, %v; want 1", n, err)
	}
	if !strings.HasPrefix(seen, "skipped-") || strings.HasSuffix(seen, "pending-") {
		t.Errorf("the record saw %q; want A1 skipped and A2 let go", seen)
	}
	f.want(map[string]string{a1: "skipped", a2: "due"})
	var lastError string
	if err := f.db.Pool.QueryRow(ctx, `SELECT last_error FROM relay.deliveries WHERE id = $1`, first[0].ID).Scan(&lastError); err != nil || lastError != "recorded" {
		t.Errorf("the record's write: %q (%v), want it committed with the skip", lastError, err)
	}
}

// The race the second looks are there for: a relay records the success of a key's
// delivery while another fans out a new event of the key. The fan-out's statement sees
// the old delivery under way and holds the new one; the record does not see the new
// one and lets nothing go. Whichever of the two commits second sees the other in its
// second look, so the new delivery does not stay held.
func TestFanOutLetsGoWhatItHeldBehindARecordCommittingMeanwhile(t *testing.T) {
	t.Parallel()
	f := newOrderedFixture(t)
	ctx := context.Background()
	a1 := f.emit("A")
	first := ofWebhook(f.fanOut(a1), f.ordered)
	if len(first) != 1 || first[0].EventID != a1 {
		t.Fatalf("leased %v, want A1", eventIDs(first))
	}
	a2 := f.emit("A")

	// The record runs in a transaction left open, as if its commit were slow.
	tx, err := f.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	rec := store.Outcome{Lease: first[0].Lease, Started: time.Now(), Status: store.Succeeded, StatusCode: 200, Keyed: true}
	if _, err := store.Record(ctx, tx, "me", []store.Outcome{rec}, store.Next{}); err != nil {
		t.Fatal(err)
	}
	// Not f.fanOut, which gives the second look this test takes step by step; retried
	// while another test's open transaction holds the event back.
	var out store.FannedOut
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, err = store.FanOut(ctx, f.db.Pool, store.FanOutRequest{EventID: a2, Events: 10, Owner: "me", Lease: time.Minute, DefaultRoom: 10, Limit: 10})
		if err == nil {
			break
		}
		if !strings.HasSuffix(err.Error(), "not yet visible") || time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	if len(out.Held) != 1 || f.state()[a2] != "held" {
		t.Fatalf("the fan-out did not hold A2 behind A1 (held %v, state %v)", out.Held, f.state())
	}
	// The fan-out's second look: the record has not committed, A1 is still under way.
	if _, n, err := store.ReleaseNext(ctx, f.db.Pool, out.Held, "me", store.Next{}); err != nil || n != 0 {
		t.Fatalf("the fan-out's second look let %d go (%v); want none while A1 is under way", n, err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	f.want(map[string]string{a1: "succeeded", a2: "held"}) // the record did not see A2
	// The record's second look, after its commit, sees A2.
	if _, n, err := store.ReleaseNext(ctx, f.db.Pool, []int64{first[0].ID}, "me", store.Next{}); err != nil || n != 1 {
		t.Fatalf("the record's second look let %d go (%v); want A2", n, err)
	}
	f.want(map[string]string{a1: "succeeded", a2: "due"})
}

// Keys: the one given at emit, else the Ghost resource's current id, else its previous
// id, else none; hostile data cannot make one that does not fit an index.
func TestEventKey(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	long := strings.Repeat("x", 300)
	for _, c := range []struct {
		event, data, key string
		want             *string
	}{
		{"post.published", `{"post":{"current":{"id":"p1"},"previous":{}}}`, "", ptr("p1")},
		{"post.deleted", `{"post":{"current":{},"previous":{"id":"p2"}}}`, "", ptr("p2")},
		{"member.edited", `{"member":{"current":{"id":42}}}`, "", ptr("42")},
		{"post.published", `{"post":{"current":{"id":"p1"}}}`, "mine", ptr("mine")},
		{"tag.added", `{"post":{"current":{"id":"p1"}}}`, "", nil},
		{"post.published", `[1,2]`, "", nil},
		{"post.published", `"post"`, "", nil},
		{"post.published", `{"post":{"current":{"id":""}}}`, "", nil},
		{"post.published", `{"post":{"current":{"id":"` + long + `"}}}`, "", ptr("sha256:")},
	} {
		var got *string
		if err := db.Pool.QueryRow(ctx, `SELECT relay.event_key($1, $2::json, nullif($3, ''))`, c.event, c.data, c.key).Scan(&got); err != nil {
			t.Fatal(err)
		}
		switch {
		case c.want == nil && got != nil, c.want != nil && got == nil:
			t.Errorf("key of %s %s (%q) = %v, want %v", c.event, c.data, c.key, deref(got), deref(c.want))
		case c.want != nil && *c.want == "sha256:":
			if !strings.HasPrefix(*got, "sha256:") || len(*got) != 7+64 {
				t.Errorf("long key = %q, want its SHA-256", *got)
			}
		case c.want != nil && *got != *c.want:
			t.Errorf("key of %s %s (%q) = %q, want %q", c.event, c.data, c.key, *got, *c.want)
		}
	}
	for _, key := range []string{"", long} {
		_, err := db.Pool.Exec(ctx, `SELECT relay.emit('post.published', '{}', $1)`, key)
		if err == nil || !strings.Contains(err.Error(), "ordering key must be 1 to 200 characters") {
			t.Errorf("emit with a key of %d characters: %v, want a clear refusal", len(key), err)
		}
	}
	var id, key string
	if err := db.Pool.QueryRow(ctx, `SELECT relay.emit('post.published', '{}', 'order-42')::text`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT key FROM relay.events WHERE id = $1`, id).Scan(&key); err != nil || key != "order-42" {
		t.Errorf("relay.events.key = %q (%v), want order-42", key, err)
	}
}

func ptr(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return "NULL"
	}
	return *s
}

// What a relay that died between a fan-out and its second look leaves, a key held with
// nothing in front of it, the sweep lets go; a key held behind a failure it leaves.
func TestSweepHeldLetsGoOnlyKeysWithNothingInFront(t *testing.T) {
	t.Parallel()
	f := newOrderedFixture(t)
	ctx := context.Background()
	a1, b1, b2 := f.emit("A"), f.emit("B"), f.emit("B")
	for _, c := range ofWebhook(f.fanOut(a1), f.ordered) {
		switch c.EventID {
		case a1:
			f.record(c, store.Succeeded)
		case b1:
			f.record(c, store.Failed)
		}
	}
	// A2 held though A1 has succeeded: the orphan.
	a2 := f.emit("A")
	if _, err := f.db.Pool.Exec(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, ordering_key, event_tx, event_offset, created_at)
		SELECT o."uuid"::uuid, $1, 'A', o.transaction_id, o."offset", now() - interval '1 minute' FROM relay.outbox o WHERE o."uuid" = $2`,
		f.ordered, a2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Pool.Exec(ctx, `UPDATE relay.deliveries SET created_at = now() - interval '1 minute'`); err != nil {
		t.Fatal(err)
	}
	f.want(map[string]string{a2: "held", b1: "failed", b2: "held"})
	n, err := store.SweepHeld(ctx, f.db.Pool, 10*time.Second)
	if err != nil || n != 1 {
		t.Fatalf("swept %d, %v; want 1", n, err)
	}
	f.want(map[string]string{a2: "due", b2: "held"})
}
