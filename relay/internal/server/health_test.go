package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/metrics"
	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/relay/internal/server"
	"github.com/relayhq/relay/testutil"
)

type probe struct {
	code int
	body map[string]any
}

func get(t *testing.T, url string) probe {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var p probe
	p.code = resp.StatusCode
	_ = json.NewDecoder(resp.Body).Decode(&p.body)
	return p
}

// /readyz follows the database: 503 while PostgreSQL is down, 200 once it is back,
// with no restart of the relay; /healthz (the process is alive) stays 200 throughout.
func TestReadyzIs503WhilePostgresIsDownAnd200WhenBack(t *testing.T) {
	// Not parallel: it stops and restarts a PostgreSQL cluster.
	ctx := context.Background()
	cluster, db := testutil.NewMigratedCluster(t)
	pool := db.Pool

	cfg := pipeline.DefaultConfig()
	cfg.HTTPTimeout, cfg.PollInterval = 2*time.Second, 200*time.Millisecond
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)
	r, err := pipeline.New(pool, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})
	srv := httptest.NewServer(server.New(server.Deps{Pool: pool, Relay: r, Log: log}))
	t.Cleanup(srv.Close)

	ready := func(code int) func() bool {
		return func() bool { return get(t, srv.URL+"/readyz").code == code }
	}
	testutil.Eventually(t, 10*time.Second, ready(http.StatusOK), "/readyz never 200 at start")

	if err := cluster.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, ready(http.StatusServiceUnavailable), "/readyz not 503 with PostgreSQL stopped")
	p := get(t, srv.URL+"/readyz")
	if checks, _ := p.body["checks"].(map[string]any); checks["database"] != "unreachable" {
		t.Errorf("/readyz body %v, want checks.database = unreachable", p.body)
	}
	if code := get(t, srv.URL+"/healthz").code; code != http.StatusOK {
		t.Errorf("/healthz = %d with PostgreSQL down, want 200: the process itself is fine", code)
	}

	// Restart stops what is already stopped (a no-op) and starts it on the same port.
	if err := cluster.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, ready(http.StatusOK), "/readyz not 200 after PostgreSQL came back")
	if !r.Running() {
		t.Errorf("pipeline stopped during the outage; it should ride it out")
	}
}

// /metrics is served when Deps.Metrics is set, and a scrape with the database down still
// answers, saying so in relay_database_up.
func TestMetricsRouteServesPrometheusText(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	m := metrics.New(metrics.Options{Pool: db.Pool, QueryTimeout: time.Second})
	srv := httptest.NewServer(server.New(server.Deps{Pool: db.Pool, Metrics: m}))
	t.Cleanup(srv.Close)

	text := func() string {
		resp, err := http.Get(srv.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/metrics = %d", resp.StatusCode)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("/metrics Content-Type %q, want the text format", ct)
		}
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if body := text(); !strings.Contains(body, "\nrelay_database_up 1\n") || !strings.Contains(body, "\nrelay_outbox_backlog_events 0\n") {
		t.Errorf("/metrics lacks the database gauges:\n%s", body)
	}
	db.Pool.Close() // every query now fails at once
	body := text()
	if !strings.Contains(body, "\nrelay_database_up 0\n") || strings.Contains(body, "relay_outbox_backlog_events ") {
		t.Errorf("with the database unreachable, want relay_database_up 0 and no backlog gauge:\n%s", body)
	}
	if !strings.Contains(body, "\ngo_goroutines ") {
		t.Errorf("runtime metrics missing when the database is down")
	}
}
