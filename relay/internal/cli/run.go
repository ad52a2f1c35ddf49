package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/alecthomas/kong"
	"golang.org/x/net/netutil"

	"github.com/relayhq/relay/relay/internal/ghostsite"
	"github.com/relayhq/relay/relay/internal/metrics"
	"github.com/relayhq/relay/relay/internal/netguard"
	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/relay/internal/server"
	"github.com/relayhq/relay/relay/internal/version"
)

// RunCmd runs the relay. Its flags are the relay's configuration; each names the
// environment variable it mirrors, and a bad value stops startup with a one-line
// error naming that variable.
type RunCmd struct {
	Addr               string `name:"addr" env:"RELAY_ADDR" default:":8080" help:"HTTP listen address (health, metrics, Admin API, Stripe endpoint)."`
	HTTPTimeout        string `name:"http-timeout" env:"RELAY_HTTP_TIMEOUT" default:"10s" help:"Timeout of each delivery attempt."`
	RetrySchedule      string `name:"retry-schedule" env:"RELAY_RETRY_SCHEDULE" default:"5s,5m,30m,2h,5h,10h,10h" help:"Waits between attempts (±20% jitter); then the delivery fails."`
	AllowedTargets     string `name:"allowed-targets" env:"RELAY_ALLOWED_TARGETS" default:"" help:"Comma-separated destinations that may be delivered to although private or loopback: host:port, ip:port, [ipv6]:port, cidr:port (without :port, every port of the host)."`
	Retention          string `name:"retention" env:"RELAY_RETENTION" default:"720h" help:"Prune finished events, deliveries and attempts older than this (0 keeps all)."`
	DisableAfter       string `name:"disable-after" env:"RELAY_DISABLE_AFTER" default:"120h" help:"Disable a webhook failing without a single 2xx for this long (0 never)."`
	WebhookSecret      string `name:"webhook-secret" env:"WEBHOOK_SECRET" default:"" help:"Stripe endpoint secret (whsec_...): verifies incoming Stripe events, signs stripe.* deliveries."`
	Workers            string `name:"workers" env:"RELAY_WORKERS" default:"64" help:"Delivery attempts in flight in this process."`
	WebhookConcurrency string `name:"webhook-concurrency" env:"RELAY_WEBHOOK_CONCURRENCY" default:"8" help:"Requests in flight to one webhook from this relay process."`
	PollInterval       string `name:"poll-interval" env:"RELAY_POLL_INTERVAL" default:"1s" help:"Fallback poll interval when no notification arrives."`
	InstanceID         string `name:"instance-id" env:"RELAY_INSTANCE_ID" default:"" help:"Name of this relay in logs and leases (default: host-pid-random)."`
	MaxConnections     string `name:"max-connections" env:"RELAY_MAX_CONNECTIONS" default:"256" help:"Connections the HTTP server on RELAY_ADDR holds at once; more wait to be accepted."`
	IdleTimeout        string `name:"idle-timeout" env:"RELAY_IDLE_TIMEOUT" default:"30s" help:"How long the HTTP server on RELAY_ADDR keeps an idle keep-alive connection."`
}

// serverLimits are the bounds of the relay's own HTTP server.
type serverLimits struct {
	maxConns    int
	idleTimeout time.Duration
}

func (c *RunCmd) serverLimits() (serverLimits, error) {
	var l serverLimits
	var err error
	if l.maxConns, err = integer("RELAY_MAX_CONNECTIONS", "--max-connections", c.MaxConnections, 1, 1<<20); err != nil {
		return l, err
	}
	if l.idleTimeout, err = duration("RELAY_IDLE_TIMEOUT", "--idle-timeout", c.IdleTimeout, 100*time.Millisecond, time.Hour); err != nil {
		return l, err
	}
	return l, nil
}

// config turns the flags into a validated pipeline.Config.
func (c *RunCmd) config() (pipeline.Config, error) {
	cfg := pipeline.DefaultConfig()
	var err error
	if cfg.HTTPTimeout, err = duration("RELAY_HTTP_TIMEOUT", "--http-timeout", c.HTTPTimeout, time.Millisecond, 10*time.Minute); err != nil {
		return cfg, err
	}
	if cfg.Retry.Schedule, err = pipeline.ParseRetrySchedule(c.RetrySchedule); err != nil {
		return cfg, fmt.Errorf("RELAY_RETRY_SCHEDULE (--retry-schedule): %w", err)
	}
	if cfg.Targets, err = netguard.ParseAllowlist(c.AllowedTargets); err != nil {
		return cfg, fmt.Errorf("RELAY_ALLOWED_TARGETS (--allowed-targets): %w", err)
	}
	if cfg.Retention, err = duration("RELAY_RETENTION", "--retention", c.Retention, 0, 100*365*24*time.Hour); err != nil {
		return cfg, err
	}
	if cfg.DisableAfter, err = duration("RELAY_DISABLE_AFTER", "--disable-after", c.DisableAfter, 0, 100*365*24*time.Hour); err != nil {
		return cfg, err
	}
	if cfg.Workers, err = integer("RELAY_WORKERS", "--workers", c.Workers, 1, 10000); err != nil {
		return cfg, err
	}
	if cfg.WebhookConcurrency, err = integer("RELAY_WEBHOOK_CONCURRENCY", "--webhook-concurrency", c.WebhookConcurrency, 1, 10000); err != nil {
		return cfg, err
	}
	if cfg.PollInterval, err = duration("RELAY_POLL_INTERVAL", "--poll-interval", c.PollInterval, time.Millisecond, time.Hour); err != nil {
		return cfg, err
	}
	cfg.StripeSecret = c.WebhookSecret
	cfg.InstanceID = c.InstanceID
	return cfg, cfg.Validate()
}

func duration(env, flag, s string, lo, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s (%s): invalid duration %q (examples: 10s, 1m30s, 720h)", env, flag, s)
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("%s (%s): %s is out of range [%s, %s]", env, flag, d, lo, hi)
	}
	return d, nil
}

func integer(env, flag, s string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%s (%s): invalid number %q", env, flag, s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%s (%s): %d is out of range [%d, %d]", env, flag, n, lo, hi)
	}
	return n, nil
}

func (c *RunCmd) Run(ctx context.Context, g *Globals, kctx *kong.Context) (err error) {
	log, err := g.logger(os.Stderr)
	if err != nil {
		return err
	}
	cfg, err := c.config()
	if err != nil {
		return err
	}
	limits, err := c.serverLimits()
	if err != nil {
		return err
	}
	// Listen before connecting: a bad or busy RELAY_ADDR stops startup at once, with
	// one line, rather than after a migration. Until Serve, connections wait in the
	// backlog, and /readyz says 503 until the pipeline runs.
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("RELAY_ADDR (--addr) %s: %w", c.Addr, err)
	}
	// Each connection costs a descriptor and a goroutine: past the cap, clients wait in
	// the kernel's backlog until one closes, rather than exhausting the descriptors the
	// database pool and the deliveries need.
	ln = netutil.LimitListener(ln, limits.maxConns)
	defer ln.Close()
	db, err := g.connect(ctx, log, true)
	if err != nil {
		return err
	}
	started := false
	defer func() {
		db.Close()
		// Only a relay that said "started" says "stopped"; a failed start is the one
		// error line fail prints.
		if started {
			ev := log.Info()
			if err != nil {
				ev = log.Error().Err(err)
			}
			ev.Msg("relay stopped")
		}
	}()

	cfg.Metrics = metrics.New(metrics.Options{Pool: db.Pool, Version: version.Version, Log: log, GhostOutcomes: ghostsite.Reasons})
	r, err := pipeline.New(db.Pool, cfg, log)
	if err != nil {
		return err
	}
	keys, err := g.keyStore(db)
	if err != nil {
		return err
	}
	sites, err := g.ghostSites(db)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler: server.New(server.Deps{Pool: db.Pool, Relay: r, Log: log, StripeSecret: cfg.StripeSecret, Keys: keys,
			Metrics: cfg.Metrics, GhostSites: sites}),
		// Bounded in time as well as size (bodies are capped per endpoint): a client
		// trickling a request cannot hold a connection and goroutine for ever.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		// Idle keep-alive connections count against the cap; let them go soon.
		IdleTimeout: limits.idleTimeout,
	}
	srvErr := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			srvErr <- fmt.Errorf("RELAY_ADDR (--addr) %s: %w", c.Addr, err)
		}
		close(srvErr)
	}()

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	relayErr := make(chan error, 1)
	go func() { relayErr <- r.Run(runCtx) }()

	var firstErr error
	startedCh := r.Started()
wait:
	for {
		select {
		case <-startedCh:
			startedCh, started = nil, true
			log.Info().Str("version", version.Version).Str("addr", ln.Addr().String()).
				Str("database_url", redactDatabaseURL(db.URL)).Dict("config", startupConfig(kctx)).
				Msg("relay started")
		case <-ctx.Done():
			log.Info().Msg("signal received: shutting down")
			break wait
		case err := <-srvErr:
			firstErr = err
			break wait
		case err := <-relayErr:
			firstErr = err
			relayErr <- err
			break wait
		}
	}
	cancel()
	if err := <-relayErr; err != nil && firstErr == nil {
		firstErr = err
	}
	shutdownCtx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	defer stop()
	_ = srv.Shutdown(shutdownCtx)
	return firstErr
}

// MigrateCmd applies pending migrations.
type MigrateCmd struct{}

func (MigrateCmd) Run(ctx context.Context, g *Globals) error {
	log, err := g.logger(os.Stderr)
	if err != nil {
		return err
	}
	db, err := g.connect(ctx, log, true)
	if err != nil {
		return err
	}
	db.Close()
	fmt.Println("database is up to date")
	return nil
}
