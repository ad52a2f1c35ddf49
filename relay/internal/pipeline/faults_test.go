package pipeline_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/relay/signing"
	"github.com/relayhq/relay/testutil"
)

// gaps returns the time between consecutive requests.
func gaps(reqs []testutil.Received) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(reqs); i++ {
		out = append(out, reqs[i].At.Sub(reqs[i-1].At))
	}
	return out
}

func TestFailingTwiceThenOKSucceedsOnThirdAttemptOnSchedule(t *testing.T) {
	// Not parallel: it times the gaps between attempts, which other tests' load would stretch.
	db := testutil.NewDB(t)
	var n atomic.Int32
	rc := testutil.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		if n.Add(1) <= 2 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	wh := addWebhook(t, db, "post.added", rc.URL(), "")
	cfg := testConfig(t)
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, time.Hour}}
	_, stop := runRelay(t, db, cfg)
	id := emit(t, db, "post.added", map[string]any{"post": map[string]any{"current": map[string]any{}}})

	reqs := rc.WaitFor(t, 3, 15*time.Second)
	for _, r := range reqs {
		if r.Header.Get("webhook-id") != id {
			t.Fatalf("retry carried webhook-id %q, want %q", r.Header.Get("webhook-id"), id)
		}
	}
	g := gaps(reqs)
	for i, want := range cfg.Retry.Schedule[:2] {
		// Lower bound: never early. Upper bound: generous, this is a busy 2-core box.
		if g[i] < want || g[i] > want+time.Second {
			t.Errorf("wait before attempt %d = %s, want about %s", i+2, g[i], want)
		}
	}
	testutil.Eventually(t, 5*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1 AND status = 'succeeded' AND attempts = 3`, wh.ID) == 1
	}, "delivery not succeeded with 3 attempts")
	var codes string
	if err := db.Pool.QueryRow(context.Background(), `SELECT string_agg(coalesce(status_code::text, '-'), ',' ORDER BY attempt)
		FROM relay.delivery_attempts a JOIN relay.deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1`, wh.ID).Scan(&codes); err != nil {
		t.Fatal(err)
	}
	if codes != "502,502,200" {
		t.Errorf("attempt status codes = %s, want 502,502,200", codes)
	}
	settle(t, db, stop)
	if rc.Count() != 3 {
		t.Errorf("receiver got %d requests after success, want 3", rc.Count())
	}
}

func TestExhaustedScheduleLeavesDeliveryFailed(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	rc := testutil.NewReceiver(t, status(http.StatusInternalServerError))
	wh := addWebhook(t, db, "tag.added", rc.URL(), "")
	cfg := testConfig(t)
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{100 * time.Millisecond}}
	_, stop := runRelay(t, db, cfg)
	emit(t, db, "tag.added", map[string]any{"tag": map[string]any{"current": map[string]any{"slug": "x"}}})
	rc.WaitFor(t, 2, 10*time.Second)
	testutil.Eventually(t, 5*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1 AND status = 'failed' AND attempts = 2 AND next_attempt_at IS NULL`, wh.ID) == 1
	}, "delivery did not end failed after 2 attempts")
	settle(t, db, stop)
	if rc.Count() != 2 {
		t.Errorf("receiver got %d requests, want 2", rc.Count())
	}
}

func TestGoneDisablesWebhookAndCancelsItsPendingDeliveries(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	gone, release := heldGoneReceiver(t)
	healthy := testutil.NewReceiver(t, nil)
	wh := addWebhook(t, db, "post.edited", gone.URL(), "")
	addWebhook(t, db, "post.edited", healthy.URL(), "")
	cfg := testConfig(t)
	cfg.WebhookConcurrency = 1
	_, stop := runRelay(t, db, cfg)
	for i := range 5 {
		emit(t, db, "post.edited", map[string]any{"n": i})
	}
	gone.WaitFor(t, 1, 10*time.Second)
	healthy.WaitFor(t, 5, 10*time.Second)
	close(release)

	testutil.Eventually(t, 5*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.webhooks WHERE id = $1 AND status = 'disabled' AND disabled_reason LIKE '%410%'`, wh.ID) == 1
	}, "webhook not disabled after 410")
	testutil.Eventually(t, 5*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1 AND status = 'cancelled'`, wh.ID) == 4
	}, "pending deliveries of the gone webhook not cancelled")
	emit(t, db, "post.edited", map[string]any{"after": true})
	healthy.WaitFor(t, 6, 10*time.Second)
	settle(t, db, stop)
	if gone.Count() != 1 {
		t.Errorf("disabled webhook got %d requests, want 1", gone.Count())
	}
	if n := queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1`, wh.ID); n != 5 {
		t.Errorf("disabled webhook has %d deliveries, want the 5 from before it was disabled", n)
	}
}

func TestRetryAfterOn429IsHonoured(t *testing.T) {
	// Not parallel: it times the gap before the retry.
	db := testutil.NewDB(t)
	var n atomic.Int32
	rc := testutil.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		if n.Add(1) == 1 {
			w.Header().Set("Retry-After", "2")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	addWebhook(t, db, "member.edited", rc.URL(), "")
	cfg := testConfig(t)
	// The schedule says 1.5s; Retry-After asks for 2s, which is within [1.5s, 3s].
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{1500 * time.Millisecond}}
	startRelay(t, db, cfg)
	emit(t, db, "member.edited", map[string]any{"member": map[string]any{}})
	reqs := rc.WaitFor(t, 2, 15*time.Second)
	if g := reqs[1].At.Sub(reqs[0].At); g < 2*time.Second || g > 3500*time.Millisecond {
		t.Errorf("retry after 429 with Retry-After: 2 came after %s, want about 2s", g)
	}
}

func TestTimeoutIsAFailedAttemptRecordedAsGhostWouldRecordIt(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	hang := testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		<-r.Context().Done()
	})
	hw := addWebhook(t, db, "page.added", hang.URL(), "")
	cfg := testConfig(t)
	cfg.HTTPTimeout = 500 * time.Millisecond
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{time.Hour}}
	startRelay(t, db, cfg)
	emit(t, db, "page.added", map[string]any{"page": map[string]any{}})

	a := readOnlyAttempt(t, db, hw.ID)
	if a.code != nil || a.err != "timeout after 500ms" {
		t.Errorf("hanging receiver: status %v error %q, want none and a timeout", a.code, a.err)
	}
	wantLastTriggered(t, db, hw.ID, nil, "Request failed: ETIMEDOUT")
}

// attemptRow is one recorded attempt, as the tests read it back.
type attemptRow struct {
	code     *int
	err      string
	finalURL *string
}

// readOnlyAttempt waits for the webhook's one attempt to be recorded and reads it.
func readOnlyAttempt(t *testing.T, db *testutil.DB, webhookID string) attemptRow {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.delivery_attempts a JOIN relay.deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1`, webhookID) == 1
	}, "attempt not recorded")
	var a attemptRow
	var errText *string
	if err := db.Pool.QueryRow(context.Background(), `SELECT a.status_code, a.error, a.final_url FROM relay.delivery_attempts a
		JOIN relay.deliveries d ON d.id = a.delivery_id WHERE d.webhook_id = $1`, webhookID).Scan(&a.code, &errText, &a.finalURL); err != nil {
		t.Fatal(err)
	}
	if errText != nil {
		a.err = *errText
	}
	return a
}

// wantLastTriggered checks the webhook's Ghost columns: the status code as text (nil
// for no response) and Ghost's error text ("" for none).
func wantLastTriggered(t *testing.T, db *testutil.DB, webhookID string, status *string, ghostErr string) {
	t.Helper()
	var gotStatus, gotErr *string
	var at *time.Time
	if err := db.Pool.QueryRow(context.Background(), `SELECT last_triggered_status, last_triggered_error, last_triggered_at
		FROM relay.webhooks WHERE id = $1`, webhookID).Scan(&gotStatus, &gotErr, &at); err != nil {
		t.Fatal(err)
	}
	if (gotStatus == nil) != (status == nil) || (status != nil && *gotStatus != *status) {
		t.Errorf("last_triggered_status = %v, want %v", deref(gotStatus), deref(status))
	}
	if (gotErr == nil && ghostErr != "") || (gotErr != nil && *gotErr != ghostErr) {
		t.Errorf("last_triggered_error = %q, want %q", deref(gotErr), ghostErr)
	}
	if at == nil || time.Since(*at) > time.Minute || time.Until(*at) > time.Second {
		t.Errorf("last_triggered_at = %v, want the end of the request", at)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// Ghost follows 301, 302, 307 and 308 and re-sends the POST with its body; so does the
// relay, with the same signatures, recording where the request ended up.
func TestRedirectsAreFollowedWithMethodBodyAndSignatures(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	final := testutil.NewReceiver(t, nil)
	var hops []string
	for _, code := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		next := final.URL() + "/final"
		if len(hops) > 0 {
			next = hops[len(hops)-1]
		}
		code := code
		rc := testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
			http.Redirect(w, r, next, code)
		})
		hops = append(hops, rc.URL()+"/hop")
	}
	const secret = "ghost-style-secret"
	w := addWebhook(t, db, "tag.added", hops[len(hops)-1], secret)
	startRelay(t, db, testConfig(t))
	id := emit(t, db, "tag.added", map[string]any{"tag": map[string]any{"current": map[string]any{"id": "t1"}}})

	req := final.WaitFor(t, 1, 10*time.Second)[0]
	if req.Method != http.MethodPost || req.Path != "/final" || req.Header.Get("webhook-id") != id {
		t.Errorf("after 4 redirects (301, 302, 307, 308): %s %s webhook-id %q, want POST /final %s", req.Method, req.Path, req.Header.Get("webhook-id"), id)
	}
	if err := signing.VerifyGhost(secret, req.Header.Get("X-Ghost-Signature"), req.Body, 0, time.Now()); err != nil {
		t.Errorf("the redirected POST's X-Ghost-Signature does not verify over its body: %v", err)
	}
	a := readOnlyAttempt(t, db, w.ID)
	if a.code == nil || *a.code != 200 || a.finalURL == nil || *a.finalURL != final.URL()+"/final" {
		t.Errorf("attempt: status %v final_url %v, want 200 at %s/final", a.code, a.finalURL, final.URL())
	}
	ok := "200"
	wantLastTriggered(t, db, w.ID, &ok, "")
}

// Every hop dials through the SSRF guard; an endless chain ends after five redirects.
func TestRedirectsToRefusedAddressesOrWithoutEndFailTheAttempt(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	metadata := testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusTemporaryRedirect)
	})
	var loop *testutil.Receiver
	loop = testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		http.Redirect(w, r, loop.URL()+"/again", http.StatusFound)
	})
	mw := addWebhook(t, db, "tag.deleted", metadata.URL(), "")
	lw := addWebhook(t, db, "tag.deleted", loop.URL(), "")
	cfg := testConfig(t)
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{time.Hour}}
	startRelay(t, db, cfg)
	emit(t, db, "tag.deleted", map[string]any{"tag": map[string]any{}})

	a := readOnlyAttempt(t, db, mw.ID)
	if a.code != nil || !strings.Contains(a.err, "after 1 redirect(s)") || !strings.Contains(a.err, "169.254.169.254") || !strings.Contains(a.err, "refusing to connect") {
		t.Errorf("redirect to the metadata address: status %v error %q, want a refused connection after 1 redirect", a.code, a.err)
	}
	wantLastTriggered(t, db, mw.ID, nil, "Request failed: URL_PRIVATE_INVALID")

	a = readOnlyAttempt(t, db, lw.ID)
	if a.code == nil || *a.code != http.StatusFound || !strings.Contains(a.err, "more than 5 redirects") {
		t.Errorf("endless redirects: status %v error %q, want 302 and more than 5 redirects", a.code, a.err)
	}
	if n := loop.Count(); n != 6 {
		t.Errorf("the looping receiver got %d requests, want 6 (the first and 5 redirects)", n)
	}
	found := "302"
	wantLastTriggered(t, db, lw.ID, &found, "Request failed: ERR_TOO_MANY_REDIRECTS")
}

func TestPerWebhookConcurrencyIsBounded(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	var inFlight, peak atomic.Int32
	rc := testutil.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	})
	addWebhook(t, db, "post.added", rc.URL(), "")
	cfg := testConfig(t)
	cfg.WebhookConcurrency = 3
	startRelay(t, db, cfg)
	for i := range 60 {
		emit(t, db, "post.added", map[string]any{"n": i})
	}
	rc.WaitFor(t, 60, 20*time.Second)
	if p := peak.Load(); p > 3 || p < 2 {
		t.Errorf("peak concurrent requests to one webhook = %d, want at most 3 (and some parallelism)", p)
	}
}

func TestContinuouslyFailingWebhookIsDisabled(t *testing.T) {
	// Not parallel: the disable (after 1s of failing) must beat the end of a 2.4s schedule.
	db := testutil.NewDB(t)
	rc := testutil.NewReceiver(t, status(http.StatusServiceUnavailable))
	wh := addWebhook(t, db, "site.changed", rc.URL(), "")
	cfg := testConfig(t)
	cfg.DisableAfter = time.Second
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond,
		200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond,
		200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond, 200 * time.Millisecond}}
	startRelay(t, db, cfg)
	emit(t, db, "site.changed", map[string]any{})
	testutil.Eventually(t, 15*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.webhooks WHERE id = $1 AND status = 'disabled' AND disabled_reason LIKE 'no successful delivery since%'`, wh.ID) == 1
	}, "webhook not auto-disabled")
	if n := queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1 AND status = 'cancelled'`, wh.ID); n != 1 {
		t.Errorf("pending delivery of the disabled webhook not cancelled")
	}
}

// TestHangingReceiverDoesNotDelayOthers measures a healthy receiver's commit-to-receipt
// latency with and without a second webhook whose receiver hangs until the timeout, and
// compares the p99s. The two setups (each its own database and relay) run side by side
// with their events interleaved, so that whatever else loads the machine loads both.
func TestHangingReceiverDoesNotDelayOthers(t *testing.T) {
	// Not parallel: it compares latencies, which other tests' load would blur.
	const events = 400
	type setup struct {
		db      *testutil.DB
		mu      sync.Mutex
		lat     []time.Duration
		emitted map[string]time.Time
	}
	newSetup := func(withHanging bool) *setup {
		s := &setup{db: testutil.NewDB(t), emitted: map[string]time.Time{}}
		healthy := testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if at, ok := s.emitted[r.Header.Get("webhook-id")]; ok {
				s.lat = append(s.lat, time.Since(at))
			}
		})
		addWebhook(t, s.db, "post.edited", healthy.URL(), "")
		if withHanging {
			hang := testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ []byte) { <-r.Context().Done() })
			addWebhook(t, s.db, "post.edited", hang.URL(), "")
		}
		cfg := testConfig(t)
		cfg.HTTPTimeout = time.Second
		cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}}
		startRelay(t, s.db, cfg)
		return s
	}
	emitTo := func(s *setup, i int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		start := time.Now()
		s.emitted[emit(t, s.db, "post.edited", map[string]any{"n": i})] = start
	}
	alone, beside := newSetup(false), newSetup(true)
	for i := range events {
		emitTo(alone, i)
		emitTo(beside, i)
		time.Sleep(5 * time.Millisecond)
	}
	percentiles := func(s *setup) (p50, p99 time.Duration) {
		testutil.Eventually(t, 30*time.Second, func() bool {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(s.lat) >= events
		}, "healthy receiver did not get every event")
		s.mu.Lock()
		defer s.mu.Unlock()
		slices.Sort(s.lat)
		return s.lat[len(s.lat)/2], s.lat[len(s.lat)*99/100]
	}
	base50, base99 := percentiles(alone)
	hang50, hang99 := percentiles(beside)
	t.Logf("healthy receiver latency, commit to receipt: alone p50 %s p99 %s; beside a hanging receiver p50 %s p99 %s",
		base50, base99, hang50, hang99)
	// 2x the baseline, plus 25 ms of slack for scheduling noise on a loaded 2-core machine.
	if hang99 > 2*base99+25*time.Millisecond {
		t.Errorf("p99 beside a hanging receiver %s exceeds 2x the baseline %s", hang99, base99)
	}
}

func TestRefusedTargetIsARecordedFailedAttempt(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	rc := testutil.NewReceiver(t, nil)
	wh := addWebhook(t, db, "post.added", rc.URL(), "")
	cfg := testConfig(t)
	cfg.Targets = nil // the default: loopback is refused
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{time.Hour}}
	startRelay(t, db, cfg)
	emit(t, db, "post.added", map[string]any{"post": map[string]any{}})
	testutil.Eventually(t, 10*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.delivery_attempts a JOIN relay.deliveries d ON d.id = a.delivery_id
			WHERE d.webhook_id = $1 AND a.status_code IS NULL AND a.error LIKE '%refusing to connect to 127.0.0.1%loopback%'`, wh.ID) == 1
	}, "refused attempt not recorded with a clear error")
	if rc.Count() != 0 {
		t.Fatalf("the guarded receiver on loopback got %d requests", rc.Count())
	}
}

// heldGoneReceiver answers 410 Gone, holding the first request until release is closed
// so that the webhook's other deliveries queue up behind it.
func heldGoneReceiver(t *testing.T) (*testutil.Receiver, chan struct{}) {
	release := make(chan struct{})
	var first sync.Once
	gone := testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		first.Do(func() {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		})
		w.WriteHeader(http.StatusGone)
	})
	return gone, release
}
