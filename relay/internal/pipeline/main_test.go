package pipeline_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/relay/internal/relaytest"
	"github.com/relayhq/relay/relay/internal/webhook"
	"github.com/relayhq/relay/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m, testutil.CheckGoroutines) }

// testConfig is relaytest's loopback configuration.
func testConfig(t testing.TB) pipeline.Config { return relaytest.Config(t) }

// startRelay runs a relay on db until the test ends.
func startRelay(t testing.TB, db *testutil.DB, cfg pipeline.Config) *pipeline.Relay {
	t.Helper()
	r, _ := relaytest.Start(t, db.Pool, cfg)
	return r
}

func addWebhook(t testing.TB, db *testutil.DB, event, url, secret string) webhook.Webhook {
	t.Helper()
	in := webhook.Input{Event: &event, TargetURL: &url}
	if secret != "" {
		in.Secret = webhook.Value(secret)
	}
	w, err := webhook.Store{Pool: db.Pool}.Add(context.Background(), in)
	if err != nil {
		t.Fatalf("add webhook %s %s: %v", event, url, err)
	}
	return w
}

// emit writes one event in its own committed transaction and returns its id.
func emit(t testing.TB, db *testutil.DB, event string, data any) string {
	t.Helper()
	body, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	var id string
	err = pgx.BeginFunc(context.Background(), db.Pool, func(tx pgx.Tx) error {
		id, err = outbox.Emit(context.Background(), tx, event, body)
		return err
	})
	if err != nil {
		t.Fatalf("emit %s: %v", event, err)
	}
	return id
}

func queryInt(t testing.TB, db *testutil.DB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func status(code int) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(code) }
}

// settle waits until no delivery in db is pending (each one succeeded, failed or was
// cancelled, so nothing is left to claim or retry) and then stops the relay: stop
// returns once Run has, and Run first lets every attempt in flight finish. What the receivers have
// counted by then is all they will ever get, so a test that checks something did not
// happen (no second delivery, nothing to a disabled webhook) needs no sleep. Call it
// once every event the test checks has been fanned out (its first request arrived).
func settle(t testing.TB, db *testutil.DB, stop func()) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'pending'`) == 0
	}, "deliveries still pending")
	stop()
}

// runRelay is startRelay with an early stop.
func runRelay(t testing.TB, db *testutil.DB, cfg pipeline.Config) (*pipeline.Relay, func()) {
	t.Helper()
	return relaytest.Start(t, db.Pool, cfg)
}
