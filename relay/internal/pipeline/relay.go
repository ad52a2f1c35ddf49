// Package relay delivers the events a CMS writes to the outbox as webhooks.
//
// The flow, one file per step:
//
//	outbox (relay.emit, package outbox)
//	  -> fanout.go: watermill-sql subscriber; one delivery row per matching webhook,
//	     written in the subscriber's own transaction
//	  -> claim.go: a Watermill subscriber over relay.deliveries; leases due rows with
//	     FOR UPDATE SKIP LOCKED in a short statement
//	  -> deliver.go: the signed POST, outside any transaction
//	  -> record.go: the attempt, the delivery's new state and the webhook's
//	     last_triggered_*, batched across concurrent attempts
//
// Both stages are handlers of one Watermill router.
package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/version"
)

// Relay runs the delivery pipeline against one database. Several Relays (in one
// process or many) may run against the same database and share the work.
type Relay struct {
	pool    *pgxpool.Pool
	cfg     Config
	log     zerolog.Logger
	owner   string
	running atomic.Bool
	started chan struct{} // closed once, when both stages first consume
	once    sync.Once
}

// New checks cfg and returns a Relay that is not yet running.
func New(pool *pgxpool.Pool, cfg Config, log zerolog.Logger) (*Relay, error) {
	if pool == nil {
		return nil, errors.New("relay: nil pool")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("relay: invalid config: %w", err)
	}
	owner := cfg.InstanceID
	if owner == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	return &Relay{pool: pool, cfg: cfg, log: log.With().Str("instance", owner).Logger(), owner: owner,
		started: make(chan struct{})}, nil
}

// Started is closed when both pipeline stages are first consuming, so that the
// process can announce a start that really happened; it stays open if Run fails first.
func (r *Relay) Started() <-chan struct{} { return r.started }

// Running reports whether both pipeline stages are consuming; it turns false as soon
// as shutdown begins, before in-flight attempts finish.
func (r *Relay) Running() bool { return r.running.Load() }

// Run delivers until ctx is cancelled, then shuts down gracefully: it stops claiming,
// lets in-flight attempts finish and record (bounded by the HTTP timeout plus a few
// seconds), releases any lease it still holds, and returns nil.
func (r *Relay) Run(ctx context.Context) error {
	closing := make(chan struct{})
	wlog := wmLogger{l: r.log, closing: closing}
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()

	notes := newNotifier(r.pool.Config().ConnConfig.Copy(), r.log)
	go notes.run(bg)

	rec := newRecorder(r.pool, r.owner, r.log)
	rec.onRetry = func(at time.Time) {
		// Polling finds it anyway; a timer makes short retry schedules punctual.
		if d := time.Until(at); d < time.Minute {
			time.AfterFunc(max(d, 0), func() { wake(notes.deliveries) })
		}
	}
	recCtx, stopRecorder := context.WithCancel(context.WithoutCancel(ctx))
	recDone := make(chan struct{})
	go func() { defer close(recDone); rec.run(recCtx) }()

	go maintainer{r}.run(bg)
	go (&vacuumer{r: r, rec: rec}).run(bg)

	outboxSub, err := newOutboxSubscriber(r.pool, r.cfg, notes.outbox, closing, wlog)
	if err != nil {
		stopRecorder()
		return err
	}
	claimSub := newClaimSubscriber(r.pool, r.cfg, r.owner, notes.deliveries, r.log)
	d := &deliverer{
		cfg:       r.cfg,
		client:    newHTTPClient(r.cfg),
		userAgent: "relay/" + version.Version,
		rec:       rec,
		store:     &disabler{pool: r.pool, log: r.log, metrics: r.cfg.Metrics},
		log:       r.log,
		now:       time.Now,
	}

	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: r.cfg.HTTPTimeout + 5*time.Second}, wlog)
	if err != nil {
		stopRecorder()
		return fmt.Errorf("relay: create router: %w", err)
	}
	router.AddConsumerHandler("fanout", outboxTopic, outboxSub, countedFanout(r.cfg.Metrics, (&fanouter{batch: r.cfg.OutboxBatch}).handle))
	router.AddConsumerHandler("deliver", "deliveries", claimSub, d.handle)

	routerErr := make(chan error, 1)
	go func() { routerErr <- router.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-router.Running():
		r.running.Store(true)
		r.once.Do(func() { close(r.started) })
		// Debug: the binary logs "relay started" with its whole configuration.
		r.log.Debug().Int("workers", r.cfg.Workers).Int("webhook_concurrency", r.cfg.WebhookConcurrency).
			Dur("http_timeout", r.cfg.HTTPTimeout).Msg("pipeline started")
	case err := <-routerErr:
		stopRecorder()
		return fmt.Errorf("relay: router stopped at start: %w", err)
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-routerErr:
		runErr = fmt.Errorf("relay: router stopped: %w", err)
	}
	r.running.Store(false)
	r.log.Info().Msg("relay stopping: no new claims; waiting for in-flight attempts")
	close(closing)
	if err := router.Close(); err != nil {
		r.log.Warn().Err(err).Msg("in-flight attempts did not finish in time")
	}
	stopRecorder()
	<-recDone
	r.releaseLeases()
	r.log.Debug().Msg("pipeline stopped")
	return runErr
}

// releaseLeases hands back whatever this instance still holds, so that another relay
// can take it at once rather than when the lease would have expired.
func (r *Relay) releaseLeases() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tag, err := r.pool.Exec(ctx, `UPDATE relay.deliveries
		SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
		WHERE status = 'pending' AND lease_owner = $1`, r.owner)
	if err != nil {
		r.log.Warn().Err(err).Msg("could not release leases; they expire by themselves")
		return
	}
	if n := tag.RowsAffected(); n > 0 {
		r.log.Warn().Int64("deliveries", n).Msg("released leases of unfinished attempts")
	}
}
