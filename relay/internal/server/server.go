// Package server is the relay's HTTP surface on RELAY_ADDR: health and readiness
// for orchestrators, and (in their own files) the Admin, audit and Stripe endpoints.
package server

import (
	"context"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/apikey"
	"github.com/relayhq/relay/relay/internal/console"
	"github.com/relayhq/relay/relay/internal/ghostsite"
	"github.com/relayhq/relay/relay/internal/metrics"
	"github.com/relayhq/relay/schema"
)

// Runner is the part of relay.Relay readiness depends on.
type Runner interface{ Running() bool }

// Deps are what the handlers need.
type Deps struct {
	Pool  *pgxpool.Pool
	Relay Runner
	Log   zerolog.Logger
	// StripeSecret (WEBHOOK_SECRET) verifies the Stripe endpoint's requests; empty
	// makes that endpoint answer 503.
	StripeSecret string
	// Keys verifies the Admin and audit APIs' tokens; nil reads relay.api_keys
	// without a key-encryption key (keys sealed under one are then refused).
	Keys *apikey.Store
	// Metrics serves /metrics and counts what the endpoints do; nil leaves the route
	// out and counts nothing.
	Metrics *metrics.Metrics
	// GhostSites verifies and stores connected Ghost sites' webhooks; nil reads
	// relay.ghost_sites without a key-encryption key (sealed sites are then refused).
	GhostSites *ghostsite.Store
	// ConsoleSessionTTL is how long an operator console session lasts
	// (console.DefaultSessionTTL when zero).
	ConsoleSessionTTL time.Duration
}

// New returns the relay's HTTP handler.
func New(d Deps) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", d.readyz)
	if d.Metrics != nil {
		mux.Handle("GET /metrics", d.Metrics.Handler())
	}
	registerStripe(mux, d)
	registerGhostInbound(mux, d)
	registerAdmin(mux, d)
	registerAudit(mux, d)
	registerReplays(mux, d)
	// The operator console, under /ui/ (a request for /ui is redirected there).
	mux.Handle(console.Prefix, console.New(console.Deps{Pool: d.Pool, Keys: d.keys(), GhostSites: d.GhostSites,
		Log: d.Log, SessionTTL: d.ConsoleSessionTTL}))
	return mux
}

// readyz is 200 only when the database answers, its schema is this binary's, and the
// pipeline is consuming; it turns 503 as soon as shutdown begins.
func (d Deps) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"database": "ok", "schema": "ok", "pipeline": "ok"}
	ok := true
	if err := d.Pool.Ping(ctx); err != nil {
		checks["database"], checks["schema"], ok = "unreachable", "unknown", false
	} else {
		db := stdlib.OpenDBFromPool(d.Pool)
		if err := schema.Check(ctx, db); err != nil {
			checks["schema"], ok = err.Error(), false
		}
		_ = db.Close()
	}
	if d.Relay != nil && !d.Relay.Running() {
		checks["pipeline"], ok = "stopped", false
	}
	status := http.StatusOK
	if !ok {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{"ready": ok, "checks": checks})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(jsonBytes(v))
}
