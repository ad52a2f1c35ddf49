package receiver_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/relay/internal/relaytest"
	"github.com/relayhq/relay/relay/internal/webhook"
	"github.com/relayhq/relay/relay/receiver"
	"github.com/relayhq/relay/relay/signing"
	"github.com/relayhq/relay/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// logLines collects the handler's JSON log lines; handlers log from server goroutines.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logLines) all(t *testing.T) []map[string]any {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(l.buf.Bytes()))
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

func (l *logLines) withMessage(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, m := range l.all(t) {
		if m["message"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// signed builds the request the relay sends for a webhook with secret, at time at.
func signed(t *testing.T, secret, id string, body []byte, at time.Time) *http.Request {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
	req.Header.Set("webhook-id", id)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
	sig, err := signing.StandardSignature(secret, id, at, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("webhook-signature", sig)
	req.Header.Set("X-Ghost-Signature", signing.GhostSignature(secret, body, at))
	return req
}

func serve(h http.Handler, req *http.Request) int {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func TestReceiverAcceptsOnlyValidSignatures(t *testing.T) {
	t.Parallel()
	secret, err := webhook.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	logs := &logLines{}
	h := &receiver.Handler{Secret: secret, Log: zerolog.New(logs), Now: func() time.Time { return now }}
	body := []byte(`{"post":{"current":{"id":"1","title":"Hello"},"previous":{}}}`)

	if code := serve(h, signed(t, secret, "evt-1", body, now.Add(-4*time.Minute))); code != http.StatusNoContent {
		t.Fatalf("valid delivery: %d, want 204", code)
	}
	got := logs.withMessage(t, "delivery received")
	if len(got) != 1 || got[0]["id"] != "evt-1" || got[0]["verified"] != true || got[0]["duplicate"] != false {
		t.Fatalf("log of a valid delivery: %v", got)
	}
	if b, _ := json.Marshal(got[0]["body"]); !strings.Contains(string(b), `"title":"Hello"`) {
		t.Errorf("logged body %s, want the delivered JSON", b)
	}
	// A retry carries the same webhook-id: accepted, and flagged.
	if code := serve(h, signed(t, secret, "evt-1", body, now)); code != http.StatusNoContent {
		t.Fatalf("redelivery: %d, want 204", code)
	}
	if got := logs.withMessage(t, "delivery received"); len(got) != 2 || got[1]["duplicate"] != true {
		t.Errorf("redelivery not flagged as duplicate: %v", got)
	}

	refused := map[string]*http.Request{
		"stale":         signed(t, secret, "evt-2", body, now.Add(-6*time.Minute)),
		"future":        signed(t, secret, "evt-3", body, now.Add(6*time.Minute)),
		"other secret":  signed(t, "whsec_b3RoZXIgc2VjcmV0IG9mIDMyIGJ5dGVzIGZvciB0ZXN0cw==", "evt-4", body, now),
		"unsigned":      httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body)),
		"tampered body": func() *http.Request { r := signed(t, secret, "evt-5", body, now); r.Body = http.NoBody; return r }(),
		"no ghost": func() *http.Request {
			r := signed(t, secret, "evt-6", body, now)
			r.Header.Del("X-Ghost-Signature")
			return r
		}(),
		"bad ghost": func() *http.Request {
			r := signed(t, secret, "evt-7", body, now)
			r.Header.Set("X-Ghost-Signature", "sha256=00, t=1")
			return r
		}(),
		"no std webhook": func() *http.Request {
			r := signed(t, secret, "evt-8", body, now)
			r.Header.Del("webhook-signature")
			return r
		}(),
	}
	for name, req := range refused {
		if code := serve(h, req); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
	if n := len(logs.withMessage(t, "delivery refused: bad signature")); n != len(refused) {
		t.Errorf("%d refusals logged, want %d", n, len(refused))
	}
	if code := serve(h, httptest.NewRequest(http.MethodGet, "/hook", nil)); code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", code)
	}
	big := bytes.Repeat([]byte("x"), receiver.MaxBody+1)
	if code := serve(h, httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(big))); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", code)
	}
}

func TestReceiverWithoutSecretLogsUnverified(t *testing.T) {
	t.Parallel()
	logs := &logLines{}
	h := &receiver.Handler{Log: zerolog.New(logs)}
	body := []byte(`{"object":"event","type":"customer.created","data":{}}`)
	req := httptest.NewRequest(http.MethodPost, "/hook", bytes.NewReader(body))
	req.Header.Set("webhook-id", "evt-s")
	if code := serve(h, req); code != http.StatusNoContent {
		t.Fatalf("unsigned delivery without a secret: %d, want 204", code)
	}
	got := logs.withMessage(t, "delivery received")
	if len(got) != 1 || got[0]["verified"] != false || got[0]["event"] != "stripe.customer.created" {
		t.Errorf("log: %v", got)
	}
}

// The relay's real deliveries verify: a webhook whose secret the receiver shares
// succeeds with 204; one signed with another secret is refused and retried.
func TestRelayDeliveriesVerifyAtTheReceiver(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	secret, err := webhook.GenerateSecret()
	if err != nil {
		t.Fatal(err)
	}
	logs := &logLines{}
	srv := httptest.NewServer(&receiver.Handler{Secret: secret, Log: zerolog.New(logs)})
	t.Cleanup(srv.Close)

	store := webhook.Store{Pool: db.Pool}
	add := func(url, secret string) string {
		ev := "post.published"
		w, err := store.Add(context.Background(), webhook.Input{Event: &ev, TargetURL: &url, Secret: webhook.Value(secret)})
		if err != nil {
			t.Fatal(err)
		}
		return w.ID
	}
	good := add(srv.URL+"/good", secret)
	bad := add(srv.URL+"/bad", "a-secret-the-receiver-does-not-know")

	cfg := relaytest.Config(t)
	cfg.PollInterval = 200 * time.Millisecond
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{time.Hour}}
	relaytest.Start(t, db.Pool, cfg)

	var id string
	err = pgx.BeginFunc(context.Background(), db.Pool, func(tx pgx.Tx) error {
		id, err = outbox.Emit(context.Background(), tx, "post.published", []byte(`{"post":{"current":{"id":"42"},"previous":{}}}`))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	lastCode := func(webhookID string) int {
		var code *int
		_ = db.Pool.QueryRow(context.Background(), `SELECT last_status_code FROM relay.deliveries WHERE webhook_id = $1`, webhookID).Scan(&code)
		if code == nil {
			return 0
		}
		return *code
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return lastCode(good) == 204 && lastCode(bad) == 401 },
		"deliveries not answered 204 and 401")

	got := logs.withMessage(t, "delivery received")
	if len(got) != 1 || got[0]["id"] != id || got[0]["verified"] != true || got[0]["path"] != "/good" {
		t.Errorf("receiver logged %v, want one verified delivery of %s to /good", got, id)
	}
}
