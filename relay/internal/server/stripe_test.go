package server_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stripe/stripe-go/v82"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/relayhq/relay/relay/internal/relaytest"
	"github.com/relayhq/relay/relay/internal/server"
	relaywebhook "github.com/relayhq/relay/relay/internal/webhook"
	"github.com/relayhq/relay/testutil"
)

const stripeTestSecret = "whsec_test_3f9a1c5e7b2d4f6a8c0e1b3d5f7a9c1e"

const stripePath = "/members/webhooks/stripe/"

// stripeTestBody is a Stripe event as Stripe sends it: pretty-printed with two-space
// indents and Stripe's key order, which jsonb would rewrite. Delivering it byte for byte
// is what these tests check.
func stripeTestBody(id, typ string) []byte {
	return []byte(fmt.Sprintf(`{
  "id": %q,
  "object": "event",
  "api_version": %q,
  "created": 1751000000,
  "data": {
    "object": {
      "id": "sub_1RelayTest",
      "object": "subscription",
      "customer": "cus_RelayTest",
      "status": "active",
      "metadata": {"note": "Ünïcode ✓", "amount": 1.50e2}
    }
  },
  "livemode": false,
  "pending_webhooks": 1,
  "request": {"id": null, "idempotency_key": null},
  "type": %q
}`, id, stripe.APIVersion, typ))
}

func stripeSign(body []byte, secret string, at time.Time) string {
	return webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: secret, Timestamp: at}).Header
}

// stripeLogBuffer collects the endpoint's log lines so tests can check what it never
// writes; handlers log from server goroutines, hence the lock.
type stripeLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *stripeLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *stripeLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// stripeEndpoint serves server.New with secret over real HTTP, logging into the test
// output and into the returned buffer.
func stripeEndpoint(t testing.TB, db *testutil.DB, secret string) (*httptest.Server, *stripeLogBuffer) {
	t.Helper()
	logs := &stripeLogBuffer{}
	level := zerolog.InfoLevel
	if testing.Verbose() || os.Getenv("RELAY_TEST_LOG") != "" {
		level = zerolog.DebugLevel
	}
	log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), logs)).Level(level)
	srv := httptest.NewServer(server.New(server.Deps{Pool: db.Pool, Log: log, StripeSecret: secret}))
	t.Cleanup(srv.Close)
	return srv, logs
}

// stripeStartRelay runs the delivery pipeline on db until stop is called or the test
// ends, delivering to loopback receivers and re-signing stripe.* deliveries with secret.
func stripeStartRelay(t testing.TB, db *testutil.DB, secret string) (stop func()) {
	t.Helper()
	cfg := relaytest.Config(t)
	cfg.PollInterval = 200 * time.Millisecond
	cfg.StripeSecret = secret
	_, stop = relaytest.Start(t, db.Pool, cfg)
	return stop
}

// stripeSettle waits until no delivery in db is pending (each one succeeded, failed or
// was cancelled, so nothing is left to claim or retry) and then stops the relay: stop
// returns once Run has, and Run first lets every attempt in flight finish. What the
// receivers have counted by then is all they will ever get, so "delivered once" needs
// no sleep. Call it once every event the test checks has been fanned out.
func stripeSettle(t testing.TB, db *testutil.DB, stop func()) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		return stripeCount(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'pending'`) == 0
	}, "deliveries still pending")
	stop()
}

// stripeAddWebhook subscribes url to event, without the Stripe-Signature mark.
func stripeAddWebhook(t testing.TB, db *testutil.DB, event, url string) relaywebhook.Webhook {
	t.Helper()
	return stripeAdd(t, db, relaywebhook.Input{Event: &event, TargetURL: &url})
}

// stripeAddGhostWebhook subscribes Ghost's Stripe endpoint at url to event, marked to
// receive Stripe-Signature as an operator does with `relay webhooks add --stripe-signature`.
func stripeAddGhostWebhook(t testing.TB, db *testutil.DB, event, url string) relaywebhook.Webhook {
	t.Helper()
	marked := true
	return stripeAdd(t, db, relaywebhook.Input{Event: &event, TargetURL: &url, StripeSignature: &marked})
}

func stripeAdd(t testing.TB, db *testutil.DB, in relaywebhook.Input) relaywebhook.Webhook {
	t.Helper()
	w, err := (relaywebhook.Store{Pool: db.Pool}).Add(context.Background(), in)
	if err != nil {
		t.Fatalf("add webhook %s %s: %v", *in.Event, *in.TargetURL, err)
	}
	return w
}

type stripeReply struct {
	Received  bool   `json:"received"`
	Duplicate bool   `json:"duplicate"`
	Emitted   bool   `json:"emitted"`
	EventID   string `json:"event_id"`
	Reason    string `json:"reason"`
	Error     string `json:"error"`
}

// stripePost sends body with the given Stripe-Signature ("" sends none) and decodes the
// JSON answer. It may run on any goroutine: it reports problems as errors, not t.Fatal.
func stripePost(client *http.Client, url string, body io.Reader, header string) (int, stripeReply, error) {
	var reply stripeReply
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		return 0, reply, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if header != "" {
		req.Header.Set("Stripe-Signature", header)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, reply, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, reply, err
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return resp.StatusCode, reply, fmt.Errorf("status %d: Content-Type %q, body %q", resp.StatusCode, ct, raw)
	}
	if err := json.Unmarshal(raw, &reply); err != nil {
		return resp.StatusCode, reply, fmt.Errorf("status %d: body %q: %w", resp.StatusCode, raw, err)
	}
	return resp.StatusCode, reply, nil
}

func stripeMustPost(t testing.TB, url string, body []byte, header string) (int, stripeReply) {
	t.Helper()
	code, reply, err := stripePost(http.DefaultClient, url, bytes.NewReader(body), header)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return code, reply
}

func stripeCount(t testing.TB, db *testutil.DB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// stripeAssertNothingStored checks that a refused request left no trace.
func stripeAssertNothingStored(t testing.TB, db *testutil.DB) {
	t.Helper()
	if n := stripeCount(t, db, `SELECT count(*) FROM relay.stripe_events`); n != 0 {
		t.Errorf("relay.stripe_events has %d rows, want 0", n)
	}
	if n := stripeCount(t, db, `SELECT count(*) FROM relay.events`); n != 0 {
		t.Errorf("relay.events has %d rows, want 0", n)
	}
}

// stripeVerifyDelivery checks a forwarded request the way a Ghost site's endpoint (or
// any stripe-go user) would, and returns the event.
func stripeVerifyDelivery(t testing.TB, req testutil.Received, wantBody []byte) stripe.Event {
	t.Helper()
	if !bytes.Equal(req.Body, wantBody) {
		t.Errorf("delivered body differs from what Stripe sent:\n got %q\nwant %q", req.Body, wantBody)
	}
	ev, err := webhook.ConstructEvent(req.Body, req.Header.Get("Stripe-Signature"), stripeTestSecret)
	if err != nil {
		t.Fatalf("stripe-go ConstructEvent refused the relayed request (Stripe-Signature %q): %v",
			req.Header.Get("Stripe-Signature"), err)
	}
	return ev
}

func TestStripeEventStoredEmittedAndDeliveredOnce(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ghost := testutil.NewReceiver(t, nil)
	other := testutil.NewReceiver(t, nil)
	stripeAddGhostWebhook(t, db, "stripe.*", ghost.URL()+stripePath)
	stripeAddWebhook(t, db, "post.*", other.URL())
	stop := stripeStartRelay(t, db, stripeTestSecret)
	srv, logs := stripeEndpoint(t, db, stripeTestSecret)

	body := stripeTestBody("evt_1RelayOnce", "customer.subscription.updated")
	header := stripeSign(body, stripeTestSecret, time.Now())
	code, reply := stripeMustPost(t, srv.URL+stripePath, body, header)
	if code != http.StatusOK || !reply.Received || reply.Duplicate || !reply.Emitted || reply.EventID == "" {
		t.Fatalf("POST = %d %+v, want 200 received, emitted, not duplicate, with event_id", code, reply)
	}

	req := ghost.WaitFor(t, 1, 10*time.Second)[0]
	ev := stripeVerifyDelivery(t, req, body)
	if ev.ID != "evt_1RelayOnce" || ev.Type != "customer.subscription.updated" {
		t.Errorf("ConstructEvent read id %q type %q", ev.ID, ev.Type)
	}
	if req.Path != stripePath {
		t.Errorf("delivered to %q, want %q", req.Path, stripePath)
	}
	if got := req.Header.Get("webhook-id"); got != reply.EventID {
		t.Errorf("webhook-id %q, want the emitted event id %q", got, reply.EventID)
	}

	var (
		typ, apiVersion, eventID, raw, name, data string
		livemode                                  bool
		created, received                         time.Time
	)
	err := db.Pool.QueryRow(context.Background(), `
		SELECT s.type, s.livemode, s.api_version, s.stripe_created_at, s.received_at, s.event_id::text,
		       s.raw::text, e.event, e.data::text
		  FROM relay.stripe_events s JOIN relay.events e ON e.id = s.event_id
		 WHERE s.id = $1`, "evt_1RelayOnce").
		Scan(&typ, &livemode, &apiVersion, &created, &received, &eventID, &raw, &name, &data)
	if err != nil {
		t.Fatalf("read stored event: %v", err)
	}
	if typ != "customer.subscription.updated" || livemode || apiVersion != stripe.APIVersion ||
		!created.Equal(time.Unix(1751000000, 0)) || time.Since(received).Abs() > time.Minute || eventID != reply.EventID {
		t.Errorf("stored row: type %q livemode %v api_version %q created %v received %v event_id %q",
			typ, livemode, apiVersion, created, received, eventID)
	}
	if name != "stripe.customer.subscription.updated" {
		t.Errorf("emitted as %q, want stripe.customer.subscription.updated", name)
	}
	if raw != string(body) || data != string(body) {
		t.Errorf("stored JSON is not the exact body:\n raw %q\ndata %q", raw, data)
	}

	// No second delivery, and nothing for webhooks of other events: once the relay has
	// settled and stopped, none can come.
	stripeSettle(t, db, stop)
	if n := ghost.Count(); n != 1 {
		t.Errorf("stripe.* webhook received %d requests, want 1", n)
	}
	if n := other.Count(); n != 0 {
		t.Errorf("post.* webhook received %d requests, want 0", n)
	}
	if n := stripeCount(t, db, `SELECT count(*) FROM relay.deliveries WHERE event_id = $1 AND status = 'succeeded'`, reply.EventID); n != 1 {
		t.Errorf("succeeded deliveries = %d, want 1", n)
	}
	if strings.Contains(logs.String(), stripeTestSecret) || strings.Contains(logs.String(), header) {
		t.Errorf("the endpoint logged the secret or the signature:\n%s", logs.String())
	}
}

func TestStripeRedeliveryIsStoredAndDeliveredOnce(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ghost := testutil.NewReceiver(t, nil)
	stripeAddGhostWebhook(t, db, "stripe.*", ghost.URL()+stripePath)
	stop := stripeStartRelay(t, db, stripeTestSecret)
	srv, _ := stripeEndpoint(t, db, stripeTestSecret)

	body := stripeTestBody("evt_1RelayThrice", "invoice.payment_succeeded")
	var first string
	// Stripe re-signs every retry; both spellings of the path must work without a redirect.
	for i, path := range []string{stripePath, strings.TrimSuffix(stripePath, "/"), stripePath} {
		code, reply := stripeMustPost(t, srv.URL+path, body, stripeSign(body, stripeTestSecret, time.Now()))
		if code != http.StatusOK || !reply.Received {
			t.Fatalf("POST %d to %s = %d %+v, want 200 received", i+1, path, code, reply)
		}
		if i == 0 {
			if reply.Duplicate || !reply.Emitted {
				t.Fatalf("first POST = %+v, want emitted and not a duplicate", reply)
			}
			first = reply.EventID
		} else if !reply.Duplicate || reply.Emitted || reply.EventID != "" {
			t.Errorf("POST %d = %+v, want a duplicate that emits nothing", i+1, reply)
		}
	}

	req := ghost.WaitFor(t, 1, 10*time.Second)[0]
	stripeVerifyDelivery(t, req, body)
	stripeSettle(t, db, stop)
	if n := ghost.Count(); n != 1 {
		t.Errorf("receiver got %d requests for one Stripe event sent 3 times, want 1", n)
	}
	if n := stripeCount(t, db, `SELECT count(*) FROM relay.stripe_events`); n != 1 {
		t.Errorf("relay.stripe_events has %d rows, want 1", n)
	}
	if n := stripeCount(t, db, `SELECT count(*) FROM relay.events`); n != 1 {
		t.Errorf("relay.events has %d rows, want 1", n)
	}
	if got := req.Header.Get("webhook-id"); got != first {
		t.Errorf("webhook-id %q, want %q", got, first)
	}
}

func TestStripeConcurrentDuplicatesStoreOnce(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	srv, _ := stripeEndpoint(t, db, stripeTestSecret)
	body := stripeTestBody("evt_1RelayRace", "charge.refunded")
	header := stripeSign(body, stripeTestSecret, time.Now())

	const n = 20
	var wg sync.WaitGroup
	replies := make([]stripeReply, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var code int
			code, replies[i], errs[i] = stripePost(http.DefaultClient, srv.URL+stripePath, bytes.NewReader(body), header)
			if errs[i] == nil && code != http.StatusOK {
				errs[i] = fmt.Errorf("status %d: %+v", code, replies[i])
			}
		}()
	}
	close(start)
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("POST %d: %v", i, errs[i])
		}
		if !replies[i].Duplicate {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d of %d concurrent identical POSTs were taken as new, want exactly 1", fresh, n)
	}
	if c := stripeCount(t, db, `SELECT count(*) FROM relay.stripe_events`); c != 1 {
		t.Errorf("relay.stripe_events has %d rows, want 1", c)
	}
	if c := stripeCount(t, db, `SELECT count(*) FROM relay.events`); c != 1 {
		t.Errorf("relay.events has %d rows, want 1", c)
	}
}

func TestStripeRefusals(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	srv, logs := stripeEndpoint(t, db, stripeTestSecret)
	url := srv.URL + stripePath
	now := time.Now()
	body := stripeTestBody("evt_1RelayRefused", "checkout.session.completed")
	good := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: stripeTestSecret, Timestamp: now})
	wrong := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: body, Secret: "whsec_not_the_secret", Timestamp: now})
	signed := func(b []byte) ([]byte, string) { return b, stripeSign(b, stripeTestSecret, now) }

	cases := []struct {
		name   string
		body   []byte
		header string
		want   int
	}{
		{"missing header", body, "", http.StatusBadRequest},
		{"blank header", body, "  ", http.StatusBadRequest},
		{"missing body", nil, stripeSign(nil, stripeTestSecret, now), http.StatusBadRequest},
		{"wrong secret", body, wrong.Header, http.StatusUnauthorized},
		{"tampered body", bytes.Replace(body, []byte("active"), []byte("paused"), 1), good.Header, http.StatusUnauthorized},
		{"older than 300 s (330 s: a loaded machine must not make it pass)", body, stripeSign(body, stripeTestSecret, now.Add(-330*time.Second)), http.StatusUnauthorized},
		{"more than 300 s ahead (330 s)", body, stripeSign(body, stripeTestSecret, now.Add(330*time.Second)), http.StatusUnauthorized},
		{"malformed header", body, "garbage", http.StatusUnauthorized},
		{"v0 only", body, fmt.Sprintf("t=%d,v0=%s", now.Unix(), hex.EncodeToString(good.Signature)), http.StatusUnauthorized},
	}
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"not JSON", []byte("id=evt_1&type=charge.refunded")},
		{"invalid UTF-8", []byte("{\"id\":\"evt_\xff\",\"type\":\"charge.refunded\"}")},
		{"no id", []byte(`{"object":"event","type":"charge.refunded"}`)},
		{"NUL in id", []byte(`{"id":"evt_\u0000","type":"charge.refunded"}`)},
		{"no type", []byte(`{"id":"evt_1RelayNoType"}`)},
		{"uppercase type", []byte(`{"id":"evt_1RelayBadType","type":"Charge.Refunded"}`)},
		{"type with a space", []byte(`{"id":"evt_1RelayBadType","type":"charge refunded"}`)},
		{"type with empty segment", []byte(`{"id":"evt_1RelayBadType","type":"charge..refunded"}`)},
		{"absurd created", []byte(`{"id":"evt_1RelayBadTime","type":"charge.refunded","created":99999999999999}`)},
	} {
		b, h := signed(c.body)
		cases = append(cases, struct {
			name   string
			body   []byte
			header string
			want   int
		}{"signed but " + c.name, b, h, http.StatusBadRequest})
	}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, reply := stripeMustPost(t, url, c.body, c.header)
			if code != c.want || reply.Received || reply.Error == "" {
				t.Errorf("POST = %d %+v, want %d with received=false and an error", code, reply, c.want)
			}
			stripeAssertNothingStored(t, db)
		})
	}

	t.Run("several v1, one valid", func(t *testing.T) {
		// As during a secret roll: Stripe signs with both the old and the new secret.
		b := stripeTestBody("evt_1RelayRolled", "checkout.session.completed")
		h := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: b, Secret: stripeTestSecret, Timestamp: now})
		old := webhook.ComputeSignature(now, b, "whsec_the_old_secret")
		header := fmt.Sprintf("t=%d,v1=%s,v1=%s,v0=%s", now.Unix(), hex.EncodeToString(old), hex.EncodeToString(h.Signature), hex.EncodeToString(old))
		if code, reply := stripeMustPost(t, url, b, header); code != http.StatusOK || !reply.Emitted {
			t.Errorf("POST = %d %+v, want 200 emitted", code, reply)
		}
	})

	if out := logs.String(); strings.Contains(out, stripeTestSecret) || strings.Contains(out, hex.EncodeToString(good.Signature)) ||
		strings.Contains(out, hex.EncodeToString(wrong.Signature)) {
		t.Errorf("the endpoint logged the secret or a signature:\n%s", out)
	}
}

func TestStripeWithoutSecretIs503(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	srv, _ := stripeEndpoint(t, db, "")
	body := stripeTestBody("evt_1RelayNoSecret", "charge.refunded")
	code, reply := stripeMustPost(t, srv.URL+stripePath, body, stripeSign(body, stripeTestSecret, time.Now()))
	if code != http.StatusServiceUnavailable || reply.Received || !strings.Contains(reply.Error, "WEBHOOK_SECRET") {
		t.Errorf("POST = %d %+v, want 503 naming WEBHOOK_SECRET", code, reply)
	}
	stripeAssertNothingStored(t, db)
}

func TestStripeOversizeBodyIs413(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	srv, _ := stripeEndpoint(t, db, stripeTestSecret)
	// A genuine, validly signed event just over the 512 KiB limit: refused for its size
	// alone, before the signature is even checked.
	pad := strings.Repeat("x", 512<<10)
	body := []byte(fmt.Sprintf(`{"id":"evt_1RelayHuge","object":"event","type":"charge.refunded","pad":%q}`, pad))
	header := stripeSign(body, stripeTestSecret, time.Now())

	code, reply := stripeMustPost(t, srv.URL+stripePath, body, header)
	if code != http.StatusRequestEntityTooLarge || reply.Received {
		t.Errorf("POST with Content-Length = %d %+v, want 413", code, reply)
	}
	// Without a Content-Length (chunked), the limit must hold while reading.
	code, reply, err := stripePost(http.DefaultClient, srv.URL+stripePath, io.MultiReader(bytes.NewReader(body)), header)
	if err != nil {
		t.Fatal(err)
	}
	if code != http.StatusRequestEntityTooLarge || reply.Received {
		t.Errorf("chunked POST = %d %+v, want 413", code, reply)
	}
	stripeAssertNothingStored(t, db)

	// A body of exactly the limit is fine.
	small := []byte(`{"id":"evt_1RelayBig","object":"event","type":"charge.refunded","pad":"`)
	small = append(small, bytes.Repeat([]byte("y"), 512<<10-len(small)-2)...)
	small = append(small, '"', '}')
	if code, reply := stripeMustPost(t, srv.URL+stripePath, small, stripeSign(small, stripeTestSecret, time.Now())); code != http.StatusOK || !reply.Emitted {
		t.Errorf("POST of exactly 512 KiB = %d %+v, want 200 emitted", code, reply)
	}
}

func TestStripeRoutes(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	srv, _ := stripeEndpoint(t, db, stripeTestSecret)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, stripePath, http.StatusMethodNotAllowed},
		{http.MethodPost, stripePath + "extra", http.StatusNotFound},
		{http.MethodPost, "/members/webhooks/stripe", http.StatusBadRequest}, // reached: no header
		{http.MethodPost, stripePath, http.StatusBadRequest},
	} {
		req, err := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s %s = %d, want %d", c.method, c.path, resp.StatusCode, c.want)
		}
	}
}

// A real Stripe type can be longer than the 43 characters that fit an event name
// ("stripe." + type <= 50). Refusing it would make Stripe retry it for days and then
// disable the endpoint for every event, so it is stored, answered 200, and not emitted.
func TestStripeTypeTooLongForAnEventNameIsStoredNotEmitted(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	srv, _ := stripeEndpoint(t, db, stripeTestSecret)
	const typ = "customer.subscription.pending_update_expired" // 44 characters
	body := stripeTestBody("evt_1RelayLongType", typ)
	for i := range 2 {
		code, reply := stripeMustPost(t, srv.URL+stripePath, body, stripeSign(body, stripeTestSecret, time.Now()))
		if code != http.StatusOK || !reply.Received || reply.Emitted || reply.Duplicate != (i == 1) {
			t.Errorf("POST %d = %d %+v, want 200 received, not emitted, duplicate=%v", i+1, code, reply, i == 1)
		}
	}
	if n := stripeCount(t, db, `SELECT count(*) FROM relay.stripe_events WHERE type = $1 AND event_id IS NULL`, typ); n != 1 {
		t.Errorf("stored %d rows of the long type without event_id, want 1", n)
	}
	if n := stripeCount(t, db, `SELECT count(*) FROM relay.events`); n != 0 {
		t.Errorf("relay.events has %d rows, want 0", n)
	}
	// The longest type that does fit is emitted.
	b := stripeTestBody("evt_1RelayFits", strings.Repeat("a", 43))
	if code, reply := stripeMustPost(t, srv.URL+stripePath, b, stripeSign(b, stripeTestSecret, time.Now())); code != http.StatusOK || !reply.Emitted {
		t.Errorf("43-character type: %d %+v, want 200 emitted", code, reply)
	}
}

func TestStripeHundredConcurrentEvents(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ghost := testutil.NewReceiver(t, nil)
	stripeAddGhostWebhook(t, db, "stripe.*", ghost.URL()+stripePath)
	stop := stripeStartRelay(t, db, stripeTestSecret)
	srv, _ := stripeEndpoint(t, db, stripeTestSecret)

	const n = 100
	bodies := make([][]byte, n)
	headers := make([]string, n)
	for i := range n {
		bodies[i] = stripeTestBody(fmt.Sprintf("evt_1RelayMany%03d", i), "invoice.payment_succeeded")
		headers[i] = stripeSign(bodies[i], stripeTestSecret, time.Now())
	}
	// One connection per request, so the 100 really are in flight at once.
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n, MaxConnsPerHost: n}}
	defer client.CloseIdleConnections()

	var wg sync.WaitGroup
	errs := make([]error, n)
	replies := make([]stripeReply, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			var code int
			code, replies[i], errs[i] = stripePost(client, srv.URL+stripePath, bytes.NewReader(bodies[i]), headers[i])
			if errs[i] == nil && (code != http.StatusOK || !replies[i].Emitted || replies[i].Duplicate) {
				errs[i] = fmt.Errorf("status %d: %+v", code, replies[i])
			}
		}()
	}
	began := time.Now()
	close(start)
	wg.Wait()
	accepted := time.Since(began)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("POST %d: %v", i, err)
		}
	}
	if c := stripeCount(t, db, `SELECT count(*) FROM relay.stripe_events`); c != n {
		t.Errorf("relay.stripe_events has %d rows, want %d", c, n)
	}
	if c := stripeCount(t, db, `SELECT count(*) FROM relay.stripe_events s JOIN relay.events e ON e.id = s.event_id
		WHERE e.event = 'stripe.invoice.payment_succeeded' AND e.data::text = s.raw::text`); c != n {
		t.Errorf("%d events emitted with their stored bodies, want %d", c, n)
	}
	if c := stripeCount(t, db, `SELECT count(*) FROM relay.events`); c != n {
		t.Errorf("relay.events has %d rows, want %d (one per Stripe event)", c, n)
	}

	reqs := ghost.WaitFor(t, n, 30*time.Second)
	delivered := time.Since(began)
	stripeSettle(t, db, stop) // so that a duplicate still on its way is counted
	seen := make(map[string]bool, n)
	for _, req := range ghost.Requests() {
		ev, err := webhook.ConstructEvent(req.Body, req.Header.Get("Stripe-Signature"), stripeTestSecret)
		if err != nil {
			t.Fatalf("ConstructEvent refused a relayed request: %v", err)
		}
		if seen[ev.ID] {
			t.Errorf("%s delivered more than once", ev.ID)
		}
		seen[ev.ID] = true
	}
	if len(seen) != n || len(reqs) != n || ghost.Count() != n {
		t.Errorf("%d distinct events in %d requests, want %d in %d", len(seen), ghost.Count(), n, n)
	}
	t.Logf("%d concurrent Stripe POSTs: all answered in %v; all delivered, verified by stripe-go, in %v",
		n, accepted.Round(time.Millisecond), delivered.Round(time.Millisecond))
}
