package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"
	"golang.org/x/net/netutil"
	"golang.org/x/sync/errgroup"

	"github.com/relayhq/relay/relay/internal/console"
	"github.com/relayhq/relay/relay/internal/ghostsite"
	"github.com/relayhq/relay/relay/internal/metrics"
	"github.com/relayhq/relay/relay/internal/netguard"
	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/relay/internal/server"
	"github.com/relayhq/relay/relay/internal/version"
)

// RunCmd runs the relay. Its flags are the relay's configuration; each names the
// environment variable it mirrors, and a bad value stops startup with a one-line
// error naming that variable. Fields that fill a pipeline.Config field have its name
// (configError relies on it); the defaults are pipeline.DefaultConfig's (defaultVars).
type RunCmd struct {
	Addr               string           `name:"addr" env:"RELAY_ADDR" default:"${addr}" help:"HTTP listen address (health, metrics, Admin API, Stripe endpoint)."`
	HTTPTimeout        time.Duration    `name:"http-timeout" env:"RELAY_HTTP_TIMEOUT" default:"${http_timeout}" help:"Timeout of each delivery attempt."`
	RetrySchedule      retrySchedule    `name:"retry-schedule" env:"RELAY_RETRY_SCHEDULE" default:"${retry_schedule}" help:"Waits between attempts (±20% jitter); then the delivery fails."`
	AllowedTargets     *netguard.Policy `name:"allowed-targets" env:"RELAY_ALLOWED_TARGETS" default:"" help:"Comma-separated destinations that may be delivered to although private or loopback: host:port, ip:port, [ipv6]:port, cidr:port (without :port, every port of the host)."`
	Retention          time.Duration    `name:"retention" env:"RELAY_RETENTION" default:"${retention}" help:"Prune finished deliveries, their attempts and per-minute webhook statistics older than this (0 keeps them); never events."`
	EventRetention     time.Duration    `name:"event-retention" env:"RELAY_EVENT_RETENTION" default:"${event_retention}" help:"Prune events older than this once read and with no pending or failed delivery, with their finished deliveries (0 keeps every event)."`
	DisableAfter       time.Duration    `name:"disable-after" env:"RELAY_DISABLE_AFTER" default:"${disable_after}" help:"Disable a webhook failing without a single 2xx for this long (0 never)."`
	WebhookSecret      string           `name:"webhook-secret" env:"WEBHOOK_SECRET" default:"" help:"Stripe endpoint secret (whsec_...): verifies incoming Stripe events, signs stripe.* deliveries."`
	Workers            int              `name:"workers" env:"RELAY_WORKERS" default:"${workers}" help:"Delivery attempts in flight in this process."`
	WebhookConcurrency int              `name:"webhook-concurrency" env:"RELAY_WEBHOOK_CONCURRENCY" default:"${webhook_concurrency}" help:"Requests in flight to one webhook from this relay process."`
	PollInterval       time.Duration    `name:"poll-interval" env:"RELAY_POLL_INTERVAL" default:"${poll_interval}" help:"Fallback poll of the outbox when no notification arrives (stretched up to 5x while idle); unannounced due deliveries are looked for every 5x this."`
	ReplayRate         int              `name:"replay-rate" env:"RELAY_REPLAY_RATE" default:"${replay_rate}" help:"Deliveries per second this relay's replays create at most, all together (relay replay): what live work must be left."`
	InstanceID         string           `name:"instance-id" env:"RELAY_INSTANCE_ID" default:"" help:"Name of this relay in logs and leases (default: host-pid-random)."`
	MaxConnections     int              `name:"max-connections" env:"RELAY_MAX_CONNECTIONS" default:"${max_connections}" help:"Connections the HTTP server on RELAY_ADDR holds at once; more wait to be accepted."`
	IdleTimeout        time.Duration    `name:"idle-timeout" env:"RELAY_IDLE_TIMEOUT" default:"${idle_timeout}" help:"How long the HTTP server on RELAY_ADDR keeps an idle keep-alive connection."`
	ConsoleSessionTTL  time.Duration    `name:"console-session-ttl" env:"RELAY_CONSOLE_SESSION_TTL" default:"${console_session_ttl}" help:"How long a sign-in to the operator console (/ui/) lasts."`
}

// serverLimits are the bounds of the relay's own HTTP server.
type serverLimits struct {
	maxConns    int
	idleTimeout time.Duration
	// consoleSession is how long a console session lasts.
	consoleSession time.Duration
}

// settings checks the parsed flags: the pipeline's with its one validator
// (pipeline.Config.Validate), the HTTP server's here, where alone they are used.
func (c *RunCmd) settings() (pipeline.Config, serverLimits, error) {
	cfg := pipeline.DefaultConfig()
	cfg.HTTPTimeout = c.HTTPTimeout
	cfg.Retry.Schedule = c.RetrySchedule
	cfg.Targets = c.AllowedTargets
	cfg.Retention = c.Retention
	cfg.EventRetention = c.EventRetention
	cfg.DisableAfter = c.DisableAfter
	cfg.Workers = c.Workers
	cfg.WebhookConcurrency = c.WebhookConcurrency
	cfg.PollInterval = c.PollInterval
	cfg.ReplayRate = c.ReplayRate
	cfg.StripeSecret = c.WebhookSecret
	cfg.InstanceID = c.InstanceID
	if err := cfg.Validate(); err != nil {
		return cfg, serverLimits{}, configError(err)
	}
	limits := serverLimits{maxConns: c.MaxConnections, idleTimeout: c.IdleTimeout, consoleSession: c.ConsoleSessionTTL}
	if limits.maxConns < 1 || limits.maxConns > 1<<20 {
		return cfg, limits, &settingError{runSettingName("MaxConnections"),
			fmt.Errorf("%d is out of range [1, %d]", limits.maxConns, 1<<20)}
	}
	if limits.idleTimeout < 100*time.Millisecond || limits.idleTimeout > time.Hour {
		return cfg, limits, &settingError{runSettingName("IdleTimeout"),
			fmt.Errorf("%s is out of range [100ms, 1h]", formatDuration(limits.idleTimeout))}
	}
	if limits.consoleSession < console.MinSessionTTL || limits.consoleSession > console.MaxSessionTTL {
		return cfg, limits, &settingError{runSettingName("ConsoleSessionTTL"),
			fmt.Errorf("%s is out of range [%s, %s]", formatDuration(limits.consoleSession),
				formatDuration(console.MinSessionTTL), formatDuration(console.MaxSessionTTL))}
	}
	return cfg, limits, nil
}

// Run starts the relay: settings, then the listener, then the database, then the
// pipeline and the HTTP server until a signal or a failure stops them.
func (c *RunCmd) Run(ctx context.Context, g *Globals, kctx *kong.Context) error {
	cfg, limits, err := c.settings()
	if err != nil {
		return err
	}
	log := g.logger(os.Stderr)
	ln, err := c.listen(limits.maxConns)
	if err != nil {
		return err
	}
	defer ln.Close()
	db, err := g.connect(ctx, log, connectOptions{migrate: true, detail: zerolog.InfoLevel})
	if err != nil {
		return err
	}
	r, srv, err := assemble(g, db, cfg, limits, log)
	if err != nil {
		db.Close()
		return err
	}
	started := false
	err = runUntilStopped(ctx, ln, srv, r, log, func() {
		started = true
		log.Info().Str("version", version.Version).Str("addr", ln.Addr().String()).
			Str("database_url", redactDatabaseURL(db.URL)).Dict("config", startupConfig(kctx)).
			Msg("relay started")
	})
	db.Close()
	// Only a relay that said "started" says "stopped"; a failed start is the one error
	// line fail prints.
	if started {
		ev := log.Info()
		if err != nil {
			ev = log.Error().Err(err)
		}
		ev.Msg("relay stopped")
	}
	return err
}

// listen binds RELAY_ADDR before the database is touched: a bad or busy address stops
// startup at once, with one line, rather than after a migration. Until Serve,
// connections wait in the backlog, and /readyz says 503 until the pipeline runs.
func (c *RunCmd) listen(maxConns int) (net.Listener, error) {
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("RELAY_ADDR (--addr) %s: %w", c.Addr, err)
	}
	// Each connection costs a descriptor and a goroutine: past the cap, clients wait in
	// the kernel's backlog until one closes, rather than exhausting the descriptors the
	// database pool and the deliveries need.
	return netutil.LimitListener(ln, maxConns), nil
}

// assemble builds the pipeline and the HTTP server in front of it, sharing one pool
// and one set of metrics.
func assemble(g *Globals, db *database, cfg pipeline.Config, limits serverLimits, log zerolog.Logger) (*pipeline.Relay, *http.Server, error) {
	cfg.Metrics = metrics.New(metrics.Options{Pool: db.Pool, Version: version.Version, Log: log, GhostOutcomes: ghostsite.Reasons})
	r, err := pipeline.New(db.Pool, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	keys, err := g.keyStore(db)
	if err != nil {
		return nil, nil, err
	}
	sites, err := g.ghostSites(db)
	if err != nil {
		return nil, nil, err
	}
	srv := &http.Server{
		Handler: server.New(server.Deps{Pool: db.Pool, Relay: r, Log: log, StripeSecret: cfg.StripeSecret, Keys: keys,
			Metrics: cfg.Metrics, GhostSites: sites, ConsoleSessionTTL: limits.consoleSession}),
		// Bounded in time as well as size (bodies are capped per endpoint): a client
		// trickling a request cannot hold a connection and goroutine for ever.
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		// Idle keep-alive connections count against the cap; let them go soon.
		IdleTimeout: limits.idleTimeout,
	}
	return r, srv, nil
}

// runUntilStopped serves srv on ln and runs the pipeline until ctx ends (a signal) or
// either of them fails, and calls started once the pipeline runs. Shutdown goes in
// order: the pipeline first (claiming stops, in-flight attempts finish and are
// recorded, while readiness says 503), then the HTTP server. Every goroutine has ended
// when it returns the first error.
func runUntilStopped(ctx context.Context, ln net.Listener, srv *http.Server, r *pipeline.Relay, log zerolog.Logger, started func()) error {
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var group errgroup.Group
	group.Go(func() error {
		defer stop()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("RELAY_ADDR (--addr) %s: %w", ln.Addr(), err)
		}
		return nil
	})
	group.Go(func() error {
		defer stop()
		err := r.Run(runCtx)
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
		return err
	})
	group.Go(func() error {
		select {
		case <-r.Started():
			started()
		case <-runCtx.Done():
		}
		<-runCtx.Done()
		if ctx.Err() != nil {
			log.Info().Msg("signal received: shutting down")
		}
		return nil
	})
	return group.Wait()
}

// MigrateCmd applies pending migrations.
type MigrateCmd struct{}

func (MigrateCmd) Run(ctx context.Context, g *Globals) error {
	db, err := g.connect(ctx, g.logger(os.Stderr), connectOptions{migrate: true, detail: zerolog.DebugLevel})
	if err != nil {
		return err
	}
	db.Close()
	if len(db.Migrated) > 0 {
		versions := make([]string, len(db.Migrated))
		for i, v := range db.Migrated {
			versions[i] = strconv.FormatInt(v, 10)
		}
		fmt.Printf("applied migrations %s\n", strings.Join(versions, ", "))
	}
	fmt.Println("database is up to date")
	return nil
}
