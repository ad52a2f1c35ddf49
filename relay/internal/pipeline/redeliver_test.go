package pipeline_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/audit"
	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

func TestRedeliveredFailedDeliverySucceedsAndKeepsBothAttempts(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	var calls atomic.Int32
	rc := testutil.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	wh := addWebhook(t, db, "post.published", rc.URL(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	cfg := testConfig(t)
	cfg.Retry.Schedule = nil // no retries: the first failure is final
	cfg.PollInterval = 30 * time.Second
	startRelay(t, db, cfg)
	id := emit(t, db, "post.published", map[string]any{"post": map[string]any{"current": map[string]any{"id": "p1"}}})
	rc.WaitFor(t, 1, 10*time.Second)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE event_id = $1 AND status = 'failed' AND attempts = 1`, id) == 1
	}, "the delivery did not fail")

	st := audit.Store{Pool: db.Pool}
	failed, _, err := st.ListDeliveries(context.Background(), audit.Filter{Webhook: wh.ID, Status: "failed"})
	if err != nil || len(failed) != 1 {
		t.Fatalf("failed deliveries: %v %v", failed, err)
	}
	start := time.Now()
	res, err := store.Redeliver(context.Background(), db.Pool, store.Selection{DeliveryID: failed[0].ID})
	if err != nil || len(res.Redelivered) != 1 {
		t.Fatalf("redeliver: %+v %v", res, err)
	}
	reqs := rc.WaitFor(t, 2, 10*time.Second)
	t.Logf("redelivery reached the receiver %v after Redeliver returned", reqs[1].At.Sub(start).Round(time.Millisecond))
	if lag := reqs[1].At.Sub(start); lag > 5*time.Second {
		t.Errorf("redelivery took %v although the relay is notified", lag)
	}
	testutil.Eventually(t, 10*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE event_id = $1 AND status = 'succeeded' AND attempts = 2`, id) == 1
	}, "redelivery did not succeed")
	e, err := st.GetEvent(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	log := e.Deliveries[0].AttemptLog
	if len(log) != 2 || log[0].Attempt != 1 || *log[0].StatusCode != 500 || log[1].Attempt != 2 || *log[1].StatusCode != 200 {
		t.Errorf("attempts %+v, want #1 500 then #2 200", log)
	}

	// A succeeded delivery can be sent again on purpose, and appends a third attempt.
	if _, err := store.Redeliver(context.Background(), db.Pool, store.Selection{EventID: id}); err != nil {
		t.Fatal(err)
	}
	rc.WaitFor(t, 3, 10*time.Second)
	testutil.Eventually(t, 10*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.delivery_attempts a JOIN relay.deliveries d ON d.id = a.delivery_id
			WHERE d.event_id = $1 AND d.status = 'succeeded'`, id) == 3
	}, "third attempt not recorded")
}

func TestRedeliverByWebhookSinceTakesOnlyItsFailedDeliveries(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	a := addWebhook(t, db, "post.*", "https://a.example.com/", "")
	b := addWebhook(t, db, "post.*", "https://b.example.com/", "")
	ins := func(wh, status, age string) int64 {
		var id int64
		err := db.Pool.QueryRow(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, created_at)
			VALUES (gen_random_uuid(), $1, $2, 1, now() - $3::interval) RETURNING id`, wh, status, age).Scan(&id)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	recent := ins(a.ID, "failed", "1 hour")
	ins(a.ID, "failed", "3 days")    // too old
	ins(a.ID, "succeeded", "1 hour") // not failed
	ins(b.ID, "failed", "1 hour")    // another webhook
	inFlight := ins(a.ID, "pending", "1 hour")
	if _, err := db.Pool.Exec(ctx, `UPDATE relay.deliveries SET lease_owner = 'x', lease_token = gen_random_uuid(),
		lease_expires_at = now() + interval '1 minute' WHERE id = $1`, inFlight); err != nil {
		t.Fatal(err)
	}
	res, err := store.Redeliver(ctx, db.Pool, store.Selection{WebhookID: a.ID, Since: time.Now().Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Redelivered) != 1 || res.Redelivered[0] != recent {
		t.Errorf("redelivered %v, want [%d]", res.Redelivered, recent)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'pending' AND next_attempt_at <= now() AND lease_token IS NULL`); n != 1 {
		t.Errorf("%d deliveries due, want only the recent failed one", n)
	}
	// An attempt under way is left alone: a second one beside it would break "at most
	// one attempt in flight", and its result would be fenced out by the lease.
	_, err = store.Redeliver(ctx, db.Pool, store.Selection{DeliveryID: inFlight})
	if !errors.Is(err, store.ErrInFlight) {
		t.Errorf("redeliver of an in-flight delivery: %v, want ErrInFlight", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE id = $1 AND lease_owner = 'x'`, inFlight); n != 1 {
		t.Errorf("in-flight delivery lost its lease")
	}
	if _, err := store.Redeliver(ctx, db.Pool, store.Selection{WebhookID: a.ID}); err == nil {
		t.Errorf("--webhook without --since accepted")
	}
}
