package relay_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/relay"
	"github.com/relayhq/relay/relay/netguard"
	"github.com/relayhq/relay/relay/webhook"
	"github.com/relayhq/relay/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// testConfig is the production config with test-sized timings, delivering to the
// test receivers on loopback through the allowlist.
func testConfig(t testing.TB) relay.Config {
	t.Helper()
	cfg := relay.DefaultConfig()
	allow, err := netguard.ParseAllowlist("127.0.0.1/32")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Targets = allow
	cfg.HTTPTimeout = 2 * time.Second
	cfg.PollInterval = 500 * time.Millisecond
	cfg.Retry = relay.RetryPolicy{Schedule: []time.Duration{200 * time.Millisecond, 200 * time.Millisecond}}
	return cfg
}

// startRelay runs a relay on db until the test ends, and fails the test if it does not
// stop cleanly.
func startRelay(t testing.TB, db *testutil.DB, cfg relay.Config) *relay.Relay {
	t.Helper()
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	if testing.Verbose() || os.Getenv("RELAY_TEST_LOG") != "" {
		log = log.Level(zerolog.DebugLevel)
	}
	r, err := relay.New(db.Pool, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay stopped with error: %v", err)
			}
		case <-time.After(cfg.HTTPTimeout + 10*time.Second):
			t.Errorf("relay did not stop in time")
		}
	})
	testutil.Eventually(t, 10*time.Second, r.Running, "relay did not start")
	return r
}

func addWebhook(t testing.TB, db *testutil.DB, event, url, secret string) webhook.Webhook {
	t.Helper()
	in := webhook.Input{Event: &event, TargetURL: &url}
	if secret != "" {
		in.Secret = &secret
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

// runRelay is startRelay with an early stop: stop shuts the relay down and waits for
// it (it runs at the test's end too, and only once).
func runRelay(t testing.TB, db *testutil.DB, cfg relay.Config) (*relay.Relay, func()) {
	t.Helper()
	r, err := relay.New(db.Pool, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("relay stopped with error: %v", err)
				}
			case <-time.After(cfg.HTTPTimeout + 10*time.Second):
				t.Errorf("relay did not stop in time")
			}
		})
	}
	t.Cleanup(stop)
	testutil.Eventually(t, 10*time.Second, r.Running, "relay did not start")
	return r, stop
}
