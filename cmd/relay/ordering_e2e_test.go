package main_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/testutil"
)

// answer is one request an ordered receiver answered, in the order it answered them.
type answer struct {
	eventID string
	ok      bool
}

// TestOrderedWebhookKeepsEachKeysOrderThroughFailuresAndAKill is issue 15's proof: two
// relays, an ordered receiver failing a fifth of its requests at random, one relay
// SIGKILLed mid-run, 10,000 events over 200 posts. Every post's events arrive at the
// ordered webhook in commit order (the successful answers, a crash duplicate folded
// into the one before it), none is lost, the only duplicates are crash duplicates, and
// an unordered webhook beside it is not held back by the ordered one's keys.
func TestOrderedWebhookKeepsEachKeysOrderThroughFailuresAndAKill(t *testing.T) {
	db := testutil.NewDB(t)
	const events, keys = 10000, 200

	var mu sync.Mutex
	answers := map[string][]answer{} // by key
	orderedRc := testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		ok := rand.IntN(5) != 0
		mu.Lock()
		k := keyOf(body)
		answers[k] = append(answers[k], answer{eventID: r.Header.Get("webhook-id"), ok: ok})
		mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	unorderedRc := testutil.NewReceiver(t, nil)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `INSERT INTO relay.webhooks (event, target_url, ordered) VALUES
		('post.published', $1, true), ('post.published', $2, false)`, orderedRc.URL()+"/ordered", unorderedRc.URL()+"/unordered"); err != nil {
		t.Fatal(err)
	}

	// Each key's deliveries go one at a time, so an ordered webhook's throughput is its
	// concurrency over a step's latency: let many keys go at once, as a user would.
	const concurrency = "RELAY_WEBHOOK_CONCURRENCY=32"
	a := startRelay(t, db.URL, "o1", concurrency)
	startRelay(t, db.URL, "o2", concurrency)
	start := time.Now()
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		emitKeyed(ctx, t, db.Pool, events, keys)
	}()
	testutil.Eventually(t, 60*time.Second, func() bool { return orderedRc.Count() >= events/3 }, "no progress to a third")
	a.kill()
	inFlightAtKill := leasedBy(t, db.Pool, "o1")
	startRelay(t, db.URL, "o3", concurrency)
	<-emitted

	unorderedRc.WaitFor(t, events, 120*time.Second)
	unorderedDone := time.Since(start)
	var orderedLeft int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.deliveries d JOIN relay.webhooks w ON w.id = d.webhook_id
		WHERE w.ordered AND d.status <> 'succeeded'`).Scan(&orderedLeft); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 180*time.Second, func() bool {
		var left int
		return db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.deliveries WHERE status <> 'succeeded'`).Scan(&left) == nil && left == 0
	}, "deliveries still unfinished")
	orderedDone := time.Since(start)
	time.Sleep(time.Second) // anything doubled would arrive now

	want, ids := commitOrder(t, db.Pool)
	if len(ids) != events {
		t.Fatalf("relay.events has %d events, want %d", len(ids), events)
	}
	if len(want) != keys {
		t.Fatalf("%d keys in relay.events, want %d", len(want), keys)
	}

	mu.Lock()
	defer mu.Unlock()
	duplicates, failures, outOfOrder := 0, 0, 0
	for key, ans := range answers {
		var got []string
		for _, a := range ans {
			switch {
			case !a.ok:
				failures++
			case len(got) > 0 && got[len(got)-1] == a.eventID:
				duplicates++ // the same event again, right after itself: a crash duplicate
			default:
				got = append(got, a.eventID)
			}
		}
		if !slices.Equal(got, want[key]) {
			outOfOrder++
			if outOfOrder <= 3 {
				t.Errorf("key %s: received %d events not in commit order (first difference at %d)", key, len(got), firstDiff(got, want[key]))
			}
		}
	}
	if outOfOrder > 0 {
		t.Errorf("%d of %d keys out of commit order", outOfOrder, keys)
	}
	if dup := account(t, ids, []*testutil.Receiver{unorderedRc}); dup > inFlightAtKill {
		t.Errorf("unordered webhook: %d duplicates, more than the %d in flight at the kill", dup, inFlightAtKill)
	}
	if duplicates > inFlightAtKill {
		t.Errorf("ordered webhook: %d duplicates, more than the %d in flight at the kill", duplicates, inFlightAtKill)
	}
	t.Logf("%d events over %d keys, 2 relays, one SIGKILLed (%d leased at the kill): ordered receiver answered %d failures, %d crash duplicates",
		events, keys, inFlightAtKill, failures, duplicates)
	t.Logf("unordered webhook complete after %s (ordered webhook still had %d unfinished); ordered complete after %s",
		unorderedDone.Round(time.Millisecond), orderedLeft, orderedDone.Round(time.Millisecond))
	if orderedLeft == 0 {
		t.Errorf("the ordered webhook finished no later than the unordered one: the failures held nothing back, so the test proves nothing about it")
	}
}

// keyOf reads an emitKeyed event's key back from its body, as a receiver would.
func keyOf(body []byte) string {
	var n, k int
	if _, err := fmt.Sscanf(string(body), `{"post":{"current":{"id":"post-%d","n":%d}`, &k, &n); err != nil {
		return "?"
	}
	return fmt.Sprintf("post-%d", k)
}

// commitOrder reads every event from the database in commit order: their ids by key,
// and all of them.
func commitOrder(t *testing.T, pool *pgxpool.Pool) (byKey map[string][]string, ids []string) {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id::text, key FROM relay.events ORDER BY transaction_id, "offset"`)
	if err != nil {
		t.Fatal(err)
	}
	type ev struct{ ID, Key string }
	all, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ev])
	if err != nil {
		t.Fatal(err)
	}
	byKey = map[string][]string{}
	for _, e := range all {
		byKey[e.Key] = append(byKey[e.Key], e.ID)
		ids = append(ids, e.ID)
	}
	return byKey, ids
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// emitKeyed writes n post.published events about keys posts, picked at random, from
// four writers in transactions of ten, retrying a transaction that fails.
func emitKeyed(ctx context.Context, t *testing.T, pool interface {
	Begin(context.Context) (pgx.Tx, error)
}, n, keys int) {
	t.Helper()
	var wg sync.WaitGroup
	const writers, batch = 4, 10
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w * n / writers; i < (w+1)*n/writers; i += batch {
				evs := make([]outbox.Event, 0, batch)
				for j := i; j < min(i+batch, (w+1)*n/writers); j++ {
					evs = append(evs, outbox.Event{Name: "post.published",
						Data: fmt.Appendf(nil, `{"post":{"current":{"id":"post-%d","n":%d},"previous":{}}}`, rand.IntN(keys), j)})
				}
				for attempt := 0; ; attempt++ {
					err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
						_, err := outbox.EmitBatch(ctx, tx, evs)
						return err
					})
					if err == nil {
						break
					}
					if attempt > 100 {
						t.Errorf("emit: %v", err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
}
