package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayhq/relay/testutil"
)

// TestNewOrderedSubscriberGetsTheKeptLogInOrderThroughAKill is issue 15's replay proof:
// 3,000 events over 30 posts written ten days ago (before the webhook existed), a
// webhook added with --ordered --replay-from, live events of the same posts written
// while the replay runs, the relay SIGKILLed mid-replay and another one carrying on.
// Every event reaches the receiver; each post's events arrive in commit order, history
// before live; the only duplicates are crash duplicates; and `relay replays show`
// reports what was created.
func TestNewOrderedSubscriberGetsTheKeptLogInOrderThroughAKill(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	const history, live, keys = 3000, 300, 30

	emitKeyed(ctx, t, db.Pool, history, keys)
	if _, err := db.Pool.Exec(ctx, `UPDATE relay.outbox SET created_at = created_at - interval '10 days'`); err != nil {
		t.Fatal(err)
	}
	// A relay reads the history first: no webhook yet, so the fan-out creates nothing.
	const concurrency = "RELAY_WEBHOOK_CONCURRENCY=32"
	a := startRelay(t, db.URL, "r1", concurrency)
	testutil.Eventually(t, 60*time.Second, func() bool {
		var behind bool
		return db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM relay.outbox o, relay.outbox_offsets g
			WHERE g.consumer_group = 'relay' AND (o.transaction_id, o."offset") > (g.last_processed_transaction_id, g.offset_acked))`).
			Scan(&behind) == nil && !behind
	}, "the fan-out did not read the history")

	var mu sync.Mutex
	got := map[string][]string{} // webhook-id by key, in the order answered
	rc := testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		mu.Lock()
		key := keyOf(body)
		got[key] = append(got[key], r.Header.Get("webhook-id"))
		mu.Unlock()
		w.WriteHeader(http.StatusOK)
	})
	out := mustCLI(t, db, "webhooks", "add", "post.published", rc.URL()+"/mirror", "--ordered", "--replay-from", "30d", "--json")
	var added struct {
		ID     string `json:"id"`
		Replay struct {
			ID int64 `json:"id"`
		} `json:"replay"`
	}
	if err := json.Unmarshal([]byte(out), &added); err != nil || added.Replay.ID == 0 {
		t.Fatalf("webhooks add --replay-from: %v\n%s", err, out)
	}
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		emitKeyed(ctx, t, db.Pool, live, keys)
	}()
	testutil.Eventually(t, 60*time.Second, func() bool { return rc.Count() >= history/3 }, "no replay progress to a third")
	a.kill()
	inFlightAtKill := leasedBy(t, db.Pool, "r1")
	startRelay(t, db.URL, "r2", concurrency)
	<-emitted

	testutil.Eventually(t, 180*time.Second, func() bool {
		var left int
		return db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM relay.deliveries WHERE status <> 'succeeded')
			+ (SELECT count(*) FROM relay.replays WHERE status = 'running')
			+ $1 - (SELECT count(*) FROM relay.deliveries)`, history+live).Scan(&left) == nil && left == 0
	}, "replay and live deliveries unfinished")
	time.Sleep(time.Second) // anything doubled would arrive now

	want, _ := commitOrder(t, db.Pool)
	mu.Lock()
	defer mu.Unlock()
	duplicates, outOfOrder := 0, 0
	for key, ids := range got {
		var firsts []string
		for _, id := range ids {
			if len(firsts) > 0 && firsts[len(firsts)-1] == id {
				duplicates++ // a crash duplicate: the same event again, right after itself
				continue
			}
			firsts = append(firsts, id)
		}
		if !slices.Equal(firsts, want[key]) {
			outOfOrder++
			if outOfOrder <= 3 {
				t.Errorf("key %s: %d events received, %d in the log; first difference at %d", key, len(firsts), len(want[key]), firstDiff(firsts, want[key]))
			}
		}
	}
	if len(got) != keys || outOfOrder > 0 {
		t.Errorf("%d keys received, %d out of commit order; want %d in order", len(got), outOfOrder, keys)
	}
	if duplicates > inFlightAtKill {
		t.Errorf("%d duplicates, more than the %d in flight at the kill", duplicates, inFlightAtKill)
	}

	var rp struct {
		Status   string `json:"status"`
		Created  int64  `json:"created"`
		Existing int64  `json:"already_existing"`
		Skipped  int64  `json:"skipped"`
	}
	show := mustCLI(t, db, "replays", "show", fmt.Sprint(added.Replay.ID), "--json")
	if err := json.Unmarshal([]byte(show), &rp); err != nil {
		t.Fatalf("replays show: %v\n%s", err, show)
	}
	if rp.Status != "done" || rp.Created != history || rp.Skipped != 0 {
		t.Errorf("replay %+v; want done with the %d history events created", rp, history)
	}
	list := mustCLI(t, db, "replays")
	if !strings.Contains(list, added.ID) || !strings.Contains(list, "done") {
		t.Errorf("relay replays does not list the replay:\n%s", list)
	}
	t.Logf("%d history + %d live events over %d keys, a SIGKILL mid-replay (%d leased): %d crash duplicates",
		history, live, keys, inFlightAtKill, duplicates)
}

// relay replay's own command: a window, a filter, a summary; a second run creates
// nothing; bad input is refused in words.
func TestReplayCommandSummarisesAndNeverDoubles(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	rc := testutil.NewReceiver(t, nil)
	if _, err := db.Pool.Exec(ctx, `SELECT relay.emit('post.published', '{"post":{"current":{"id":"p"}}}') FROM generate_series(1, 20)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `SELECT relay.emit('tag.added', '{}') FROM generate_series(1, 5)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `UPDATE relay.outbox SET created_at = created_at - interval '2 days'`); err != nil {
		t.Fatal(err)
	}
	startRelay(t, db.URL, "c1")
	hook := addWebhook(t, db.Pool, "*", rc.URL()+"/all")

	out := mustCLI(t, db, "replay", "--webhook", hook, "--since", "3d", "--event", "post.*")
	if !strings.Contains(out, "done: 25 events in the window; 20 deliveries created, 0 already delivered or pending, 5 skipped") {
		t.Errorf("summary: %s", out)
	}
	rc.WaitFor(t, 20, 30*time.Second)
	again := mustCLI(t, db, "replay", "--webhook", hook, "--since", "3d")
	if !strings.Contains(again, "5 deliveries created, 20 already delivered or pending, 0 skipped") {
		t.Errorf("second summary: %s", again)
	}
	rc.WaitFor(t, 25, 30*time.Second)
	time.Sleep(500 * time.Millisecond)
	if n := rc.Count(); n != 25 {
		t.Errorf("receiver got %d requests, want 25: one per event", n)
	}

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"replay", "--webhook", hook, "--since", "yesterday-ish"}, "--since"},
		{[]string{"replay", "--webhook", hook, "--since", "1d", "--until", "2d"}, "until"},
		{[]string{"replay", "--webhook", hook, "--since", "1d", "--event", "nope.nope"}, "unknown event pattern"},
		{[]string{"replay", "--webhook", "0123456789abcdef01234567", "--since", "1d"}, "no webhook"},
		{[]string{"replays", "cancel", "999"}, "no replay 999"},
	} {
		_, errOut, code := cli(t, db, c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("relay %s: exit %d, %q; want a refusal naming %q", strings.Join(c.args, " "), code, tail(errOut, 300), c.want)
		}
	}
}
