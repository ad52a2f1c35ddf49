package pipeline_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/testutil"
)

func TestCommittedEventReachesEveryMatchingWebhookOnce(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	exact := testutil.NewReceiver(t, nil)
	wildcard := testutil.NewReceiver(t, nil)
	all := testutil.NewReceiver(t, nil)
	other := testutil.NewReceiver(t, nil)
	addWebhook(t, db, "post.published", exact.URL()+"/exact", "")
	addWebhook(t, db, "post.*", wildcard.URL()+"/wild", "")
	addWebhook(t, db, "*", all.URL()+"/all", "")
	addWebhook(t, db, "tag.added", other.URL()+"/other", "")
	_, stop := runRelay(t, db, testConfig(t))

	data := map[string]any{"post": map[string]any{"current": map[string]any{"id": "p1", "title": "Hello"}, "previous": map[string]any{}}}
	id := emit(t, db, "post.published", data)

	for name, rc := range map[string]*testutil.Receiver{"exact": exact, "post.*": wildcard, "*": all} {
		got := rc.WaitFor(t, 1, 10*time.Second)
		if got[0].Header.Get("webhook-id") != id {
			t.Errorf("%s: webhook-id %q, want event id %q", name, got[0].Header.Get("webhook-id"), id)
		}
	}
	// Nothing more may arrive: once the relay has settled and stopped, it never will.
	settle(t, db, stop)
	for name, rc := range map[string]*testutil.Receiver{"exact": exact, "post.*": wildcard, "*": all} {
		if n := rc.Count(); n != 1 {
			t.Errorf("%s received %d requests, want exactly 1", name, n)
		}
	}
	if n := other.Count(); n != 0 {
		t.Errorf("non-matching webhook received %d requests", n)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE event_id = $1 AND status = 'succeeded'`, id); n != 3 {
		t.Errorf("succeeded deliveries = %d, want 3", n)
	}

	req := exact.Requests()[0]
	var stored string
	if err := db.Pool.QueryRow(context.Background(), `SELECT data::text FROM relay.events WHERE id = $1`, id).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if string(req.Body) != stored {
		t.Errorf("body %q differs from stored data %q", req.Body, stored)
	}
	if ct := req.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if ua := req.Header.Get("User-Agent"); !strings.HasPrefix(ua, "relay/") {
		t.Errorf("User-Agent = %q", ua)
	}
	ts, err := strconv.ParseInt(req.Header.Get("webhook-timestamp"), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		t.Errorf("webhook-timestamp = %q", req.Header.Get("webhook-timestamp"))
	}
	if req.Header.Get("webhook-signature") != "" || req.Header.Get("X-Ghost-Signature") != "" {
		t.Errorf("webhook without secret got signature headers")
	}
}

func TestRolledBackEventIsNeverDelivered(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	rc := testutil.NewReceiver(t, nil)
	addWebhook(t, db, "*", rc.URL(), "")
	_, stop := runRelay(t, db, testConfig(t))
	ctx := context.Background()

	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rolledBack, err := outbox.Emit(ctx, tx, "post.added", []byte(`{"post":{"current":{"id":"gone"},"previous":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	// A committed event emitted after the rolled-back one: once it has arrived, the
	// relay has read past the point where the rolled-back one would have been.
	marker := emit(t, db, "post.added", map[string]any{"post": map[string]any{"current": map[string]any{"id": "kept"}}})
	got := rc.WaitFor(t, 1, 10*time.Second)
	settle(t, db, stop)
	if rc.Count() != 1 || got[0].Header.Get("webhook-id") != marker {
		t.Fatalf("got %d requests (first webhook-id %s), want only the committed event %s", rc.Count(), got[0].Header.Get("webhook-id"), marker)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.events WHERE id = $1`, rolledBack); n != 0 {
		t.Errorf("rolled-back event is in relay.events")
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE event_id = $1`, rolledBack); n != 0 {
		t.Errorf("rolled-back event has %d deliveries", n)
	}
}

// TestEventHeldBackByAnOlderTransactionIsReadSoonAfterItEnds: the subscriber sees an
// event only once every older transaction in the cluster has ended, so a slow
// transaction (here 1 s, four times the eager re-poll window) holds back an event that
// was announced at its commit. The relay keeps looking, with a growing wait, and
// delivers it soon after the slow transaction ends, not a poll interval (30 s) later.
func TestEventHeldBackByAnOlderTransactionIsReadSoonAfterItEnds(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	rc := testutil.NewReceiver(t, nil)
	addWebhook(t, db, "post.published", rc.URL(), "")
	cfg := testConfig(t)
	cfg.PollInterval = 30 * time.Second
	startRelay(t, db, cfg)
	ctx := context.Background()
	// The relay is running and has read the (empty) outbox once an event gets through.
	emit(t, db, "post.published", map[string]any{"post": map[string]any{"current": map[string]any{"id": "first"}}})
	rc.WaitFor(t, 1, 10*time.Second)

	slow, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Rollback(ctx)                                                 //nolint:errcheck // committed below; a failed test rolls back
	if _, err := slow.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil { // an xid: it holds the snapshot's xmin
		t.Fatal(err)
	}
	held := emit(t, db, "post.published", map[string]any{"post": map[string]any{"current": map[string]any{"id": "held"}}})
	time.Sleep(time.Second)
	if rc.Count() != 1 {
		t.Fatalf("the receiver got %d requests while an older transaction was open, want 1", rc.Count())
	}
	if err := slow.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ended := time.Now()
	reqs := rc.WaitFor(t, 2, 10*time.Second)
	if got := reqs[1].Header.Get("webhook-id"); got != held {
		t.Fatalf("second request is %s, want the held event %s", got, held)
	}
	lag := reqs[1].At.Sub(ended)
	t.Logf("the held event reached the receiver %v after the older transaction ended", lag.Round(time.Millisecond))
	if lag > 3*time.Second {
		t.Errorf("the held event arrived %v after the older transaction ended, want within about twice the 1 s it was held", lag)
	}
}

func TestUnknownEventNameRaises22023(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `SELECT relay.emit('post.nonsense', '{}')`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "22023" {
		t.Fatalf("SQL emit of unknown event: err = %v, want SQLSTATE 22023", err)
	}
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := outbox.Emit(ctx, tx, "Post.Added", []byte(`{}`))
		return err
	})
	if !errors.Is(err, outbox.ErrUnknownEvent) || !errors.As(err, &pgErr) || pgErr.Code != "22023" {
		t.Fatalf("outbox.Emit of unknown event: err = %v, want ErrUnknownEvent with 22023", err)
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.outbox`); n != 0 {
		t.Fatalf("outbox has %d rows after failed emits", n)
	}
	// Names an operator registers become valid.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO relay.event_types (name) VALUES ('order.shipped')`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `SELECT relay.emit('order.shipped', '{}')`); err != nil {
		t.Fatalf("registered event refused: %v", err)
	}
	// stripe.<type> names belong to the Stripe endpoint (see outbox's
	// TestCMSRoleCannotCreateStripeEvents).
	if _, err := db.Pool.Exec(ctx, `SELECT relay.emit('stripe.invoice.payment_succeeded', '{}')`); !errors.As(err, &pgErr) || pgErr.Code != "22023" {
		t.Fatalf("stripe.<type> through relay.emit: err = %v, want SQLSTATE 22023", err)
	}
}

func TestSignaturesVerifyIndependently(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	rc := testutil.NewReceiver(t, nil)
	plain := testutil.NewReceiver(t, nil)
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	const plainSecret = "a plain ghost secret"
	addWebhook(t, db, "post.edited", rc.URL(), secret)
	addWebhook(t, db, "post.edited", plain.URL(), plainSecret)
	startRelay(t, db, testConfig(t))
	id := emit(t, db, "post.edited", map[string]any{"post": map[string]any{"current": map[string]any{"title": "Ünïcode ✓"}, "previous": map[string]any{"title": "old"}}})

	for _, c := range []struct {
		rc     *testutil.Receiver
		secret string
	}{{rc, secret}, {plain, plainSecret}} {
		req := c.rc.WaitFor(t, 1, 10*time.Second)[0]
		if req.Header.Get("webhook-id") != id {
			t.Fatalf("webhook-id = %q", req.Header.Get("webhook-id"))
		}
		// Standard Webhooks' own Go library, with the secret as a receiver configures it.
		var wh *standardwebhooks.Webhook
		var err error
		if strings.HasPrefix(c.secret, "whsec_") {
			wh, err = standardwebhooks.NewWebhook(c.secret)
		} else {
			wh, err = standardwebhooks.NewWebhookRaw([]byte(c.secret))
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(req.Body, req.Header); err != nil {
			t.Errorf("secret %q: standard-webhooks verification failed: %v (headers %v)", c.secret, err, req.Header)
		}
		// Ghost's formula, computed here: hex HMAC-SHA256(secret, body + tsMillis).
		ghost := req.Header.Get("X-Ghost-Signature")
		parts := strings.SplitN(ghost, ", t=", 2)
		if len(parts) != 2 || !strings.HasPrefix(parts[0], "sha256=") {
			t.Fatalf("X-Ghost-Signature %q is not in Ghost's shape", ghost)
		}
		sig, tsPart := strings.TrimPrefix(parts[0], "sha256="), parts[1]
		mac := hmac.New(sha256.New, []byte(c.secret))
		mac.Write(req.Body)
		mac.Write([]byte(tsPart))
		if want := hex.EncodeToString(mac.Sum(nil)); sig != want {
			t.Errorf("X-Ghost-Signature %s, want sha256=%s, t=%s", ghost, want, tsPart)
		}
		ms, _ := strconv.ParseInt(tsPart, 10, 64)
		if time.Since(time.UnixMilli(ms)).Abs() > time.Minute {
			t.Errorf("X-Ghost-Signature t=%s is not milliseconds of now", tsPart)
		}
	}
}

func TestFailedAttemptIsRecordedAndSuccessUpdatesWebhook(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	failing := testutil.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("database on fire"))
	})
	ok := testutil.NewReceiver(t, status(http.StatusNoContent))
	bad := addWebhook(t, db, "member.added", failing.URL(), "")
	good := addWebhook(t, db, "member.added", ok.URL(), "")
	cfg := testConfig(t)
	cfg.Retry.Schedule = []time.Duration{time.Hour} // one failure, then wait: the test reads the state between
	startRelay(t, db, cfg)
	id := emit(t, db, "member.added", map[string]any{"member": map[string]any{"current": map[string]any{"email": "a@example.com"}, "previous": map[string]any{}}})
	failing.WaitFor(t, 1, 10*time.Second)
	ok.WaitFor(t, 1, 10*time.Second)

	ctx := context.Background()
	var (
		code     int
		duration int
		errText  string
		excerpt  string
	)
	testutil.Eventually(t, 5*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.delivery_attempts a JOIN relay.deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1`, bad.ID) == 1
	}, "failed attempt not recorded")
	err := db.Pool.QueryRow(ctx, `SELECT a.status_code, a.duration_ms, a.error, a.response_excerpt
		FROM relay.delivery_attempts a JOIN relay.deliveries d ON d.id = a.delivery_id
		WHERE d.webhook_id = $1 AND d.event_id = $2`, bad.ID, id).Scan(&code, &duration, &errText, &excerpt)
	if err != nil {
		t.Fatal(err)
	}
	if code != 500 || duration < 0 || errText != "HTTP 500" || excerpt != "database on fire" {
		t.Errorf("failed attempt = (%d, %dms, %q, %q)", code, duration, errText, excerpt)
	}
	var dStatus string
	var attempts int
	var next *time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT status, attempts, next_attempt_at FROM relay.deliveries WHERE webhook_id = $1`, bad.ID).Scan(&dStatus, &attempts, &next); err != nil {
		t.Fatal(err)
	}
	if dStatus != "pending" || attempts != 1 || next == nil || time.Until(*next) < 30*time.Minute {
		t.Errorf("failed delivery: status %s attempts %d next %v, want pending/1/in about an hour", dStatus, attempts, next)
	}
	var lastStatus, lastErr *string
	if err := db.Pool.QueryRow(ctx, `SELECT last_triggered_status, last_triggered_error FROM relay.webhooks WHERE id = $1`, bad.ID).Scan(&lastStatus, &lastErr); err != nil {
		t.Fatal(err)
	}
	if lastStatus == nil || *lastStatus != "500" || lastErr == nil {
		t.Errorf("failing webhook last_triggered_status %v error %v", lastStatus, lastErr)
	}

	testutil.Eventually(t, 5*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1 AND status = 'succeeded' AND delivered_at IS NOT NULL AND attempts = 1`, good.ID) == 1
	}, "2xx delivery not succeeded")
	var triggeredAt *time.Time
	if err := db.Pool.QueryRow(ctx, `SELECT last_triggered_status, last_triggered_error, last_triggered_at FROM relay.webhooks WHERE id = $1`, good.ID).Scan(&lastStatus, &lastErr, &triggeredAt); err != nil {
		t.Fatal(err)
	}
	if lastStatus == nil || *lastStatus != "204" || lastErr != nil || triggeredAt == nil {
		t.Errorf("good webhook last_triggered = %v/%v/%v, want 204/nil/set", lastStatus, lastErr, triggeredAt)
	}
}

// TestConcurrentWritersWithOverlappingTransactionsLoseNothing is the outbox's hardest
// case: transactions that start in one order and commit in another. watermill-sql only
// reads below the oldest open transaction, so none may be skipped.
func TestConcurrentWritersWithOverlappingTransactionsLoseNothing(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	rc := testutil.NewReceiver(t, nil)
	addWebhook(t, db, "post.*", rc.URL(), "")
	_, stop := runRelay(t, db, testConfig(t))

	const writers, perWriter = 8, 125
	ctx := context.Background()
	var wg sync.WaitGroup
	ids := make(chan string, writers*perWriter)
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for i := 0; i < perWriter; {
				// Transactions of 1-3 events held open 0-3 ms, so that they overlap and
				// commit out of the order in which they got their ids.
				n := min(1+rng.IntN(3), perWriter-i)
				err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
					for j := range n {
						id, err := outbox.Emit(ctx, tx, "post.edited", fmt.Appendf(nil, `{"post":{"current":{"writer":%d,"n":%d}}}`, w, i+j))
						if err != nil {
							return err
						}
						ids <- id
						time.Sleep(time.Duration(rng.IntN(1500)) * time.Microsecond)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				i += n
			}
		}()
	}
	wg.Wait()
	close(ids)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for id := range ids {
		want[id] = true
	}
	if len(want) != writers*perWriter {
		t.Fatalf("emitted %d distinct ids, want %d", len(want), writers*perWriter)
	}
	rc.WaitFor(t, len(want), 60*time.Second)
	settle(t, db, stop) // so that a duplicate still on its way is counted
	got := rc.ByWebhookID()
	var missing, doubled, unknown int
	for id := range want {
		switch got[id] {
		case 0:
			missing++
		case 1:
		default:
			doubled++
		}
	}
	for id := range got {
		if !want[id] {
			unknown++
		}
	}
	if missing+doubled+unknown > 0 || rc.Count() != len(want) {
		t.Fatalf("of %d events: %d missing, %d doubled, %d unknown, %d requests", len(want), missing, doubled, unknown, rc.Count())
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'succeeded'`); n != len(want) {
		t.Fatalf("succeeded deliveries = %d, want %d", n, len(want))
	}
}
