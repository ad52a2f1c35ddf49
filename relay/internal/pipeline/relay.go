// Package pipeline delivers the events a CMS writes to the outbox as webhooks.
//
// The flow, one file per step (every state change itself is package store's):
//
//	outbox (relay.emit, package outbox)
//	  -> fanout.go: watermill-sql subscriber; one delivery row per matching webhook,
//	     written in the subscriber's own transaction
//	  -> claim.go: a Watermill subscriber over relay.deliveries; leases due rows in a
//	     short statement and lets package schedule decide which may start
//	  -> deliver.go: the handler: the attempt (attempt.go: the signed POST, outside
//	     any transaction), then its outcome
//	  -> record.go: the attempt, the delivery's new state and the webhook's
//	     last_triggered_*, batched across concurrent attempts
//
// Both stages are handlers of one Watermill router; relay.go starts and stops
// everything, notify.go wakes the stages, maintain.go and vacuum.go keep house.
package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/relayhq/relay/relay/internal/store"
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
// seconds), releases any lease it still holds, and returns nil. Every goroutine it
// starts has ended when it returns.
func (r *Relay) Run(ctx context.Context) error {
	closing := make(chan struct{})
	wlog := wmLogger{l: r.log, closing: closing}

	// Two lifetimes: the services (notifier, housekeeping) stop first; the recorder
	// outlives the router, whose in-flight attempts still record while it closes.
	services, stopServices := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServices()
	recording, stopRecording := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRecording()
	g, failed := errgroup.WithContext(services)

	notes := newNotifier(r.pool.Config().ConnConfig.Copy(), r.log)
	g.Go(func() error { return notes.run(failed) })
	planned, err := plannedPool(ctx, r.pool)
	if err != nil {
		return err
	}
	defer planned.Close()
	claimSub := newClaimSubscriber(r.pool, r.cfg, r.owner, notes.deliveries, r.log)
	claimSub.planned = planned
	rec := newRecorder(planned, r.owner, r.log, claimSub)
	g.Go(func() error { return rec.run(recording) })
	g.Go(func() error { return claimSub.recheck.run(failed) })
	g.Go(func() error { return maintainer{db: r.pool, cfg: r.cfg, log: r.log}.run(failed) })
	g.Go(func() error { return (&vacuumer{pool: r.pool, log: r.log, rec: rec}).run(failed) })
	g.Go(func() error { return newReplayer(r.pool, r.log, r.cfg.ReplayRate, notes.replays).run(failed) })

	transport := newTransport(r.cfg)
	// Its keep-alive connections (and their goroutines) end with Run.
	defer transport.CloseIdleConnections()
	router, err := r.router(notes, claimSub, rec, transport, closing, wlog)
	if err != nil {
		stopRecording()
		stopServices()
		return errors.Join(err, g.Wait())
	}
	routerDone := make(chan error, 1)
	g.Go(func() error {
		err := router.Run(context.WithoutCancel(ctx))
		routerDone <- err
		return err
	})

	runErr := r.awaitStart(ctx, router, routerDone, failed)
	if runErr == nil {
		select {
		case <-ctx.Done():
		case <-failed.Done(): // a service or the router stopped with an error
		}
	}
	// Shutdown, in order: stop claiming and let the in-flight attempts finish; then
	// stop recording, hand back what is still leased, stop the rest.
	r.running.Store(false)
	r.log.Info().Msg("relay stopping: no new claims; waiting for in-flight attempts")
	close(closing)
	if err := router.Close(); err != nil {
		r.log.Warn().Err(err).Msg("in-flight attempts did not finish in time")
	}
	stopRecording()
	r.releaseLeases()
	stopServices()
	err = g.Wait()
	if runErr == nil && err != nil {
		runErr = fmt.Errorf("relay: %w", err)
	}
	r.log.Debug().Msg("pipeline stopped")
	return runErr
}

// plannedPool is a small pool like pool, for the claim and the record, that plans each
// statement for its values. pgx prepares every statement, and after five executions
// PostgreSQL may switch to one generic plan that ignores the arrays they take (a batch's
// ids, each webhook's room): measured beside a replay, the record's generic plan took
// 22.8 ms on average (max 564 ms) against 0.7 ms planned each time, the claim's 1.5 ms
// against 0.3 ms, and workers waiting on records held up every delivery. Not the fan-out:
// planning its large statement each time cost a steady 500 events/s about 5 ms of
// commit-to-receipt p50.
func plannedPool(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Pool, error) {
	cfg := pool.Config().Copy()
	cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	// One claim and one record batch at a time, and one to spare for a retry.
	cfg.MaxConns, cfg.MinConns = 3, 0
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("relay: pool for the claim and the record: %w", err)
	}
	return p, nil
}

// router builds the Watermill router of the two stages.
func (r *Relay) router(notes *notifier, claimSub *claimSubscriber, rec *recorder, transport *http.Transport, closing <-chan struct{}, wlog wmLogger) (*message.Router, error) {
	outboxSub, err := newOutboxSubscriber(r.pool, r.cfg, notes.outbox, closing, wlog)
	if err != nil {
		return nil, err
	}
	d := &deliverer{
		cfg:       r.cfg,
		transport: transport,
		userAgent: "relay/" + version.Version,
		pool:      r.pool,
		slots:     claimSub,
		rec:       rec,
		log:       r.log,
		now:       time.Now,
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: r.cfg.HTTPTimeout + 5*time.Second}, wlog)
	if err != nil {
		return nil, fmt.Errorf("relay: create router: %w", err)
	}
	fan := &fanouter{pool: r.pool, batch: r.cfg.OutboxBatch, sender: claimSub}
	router.AddConsumerHandler("fanout", store.OutboxTopic, outboxSub, countedFanout(r.cfg.Metrics, fan.handle))
	router.AddConsumerHandler("deliver", "deliveries", claimSub, d.handle)
	return router, nil
}

// awaitStart waits until the router consumes (then Running turns true and Started is
// closed), or returns why it never will.
func (r *Relay) awaitStart(ctx context.Context, router *message.Router, routerDone <-chan error, failed context.Context) error {
	select {
	case <-router.Running():
		r.running.Store(true)
		r.once.Do(func() { close(r.started) })
		// Debug: the binary logs "relay started" with its whole configuration.
		r.log.Debug().Int("workers", r.cfg.Workers).Int("webhook_concurrency", r.cfg.WebhookConcurrency).
			Dur("http_timeout", r.cfg.HTTPTimeout).Msg("pipeline started")
		return nil
	case err := <-routerDone:
		return fmt.Errorf("relay: router stopped at start: %w", err)
	case <-failed.Done():
		return errors.New("relay: a service stopped at start")
	case <-ctx.Done():
		return nil
	}
}

// releaseLeases hands back whatever this instance still holds, so that another relay
// can take it at once rather than when the lease would have expired.
func (r *Relay) releaseLeases() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := store.Release(ctx, r.pool, r.owner, nil)
	if err != nil {
		r.log.Warn().Err(err).Msg("could not release leases; they expire by themselves")
		return
	}
	if n > 0 {
		r.log.Warn().Int64("deliveries", n).Msg("released leases of unfinished attempts")
	}
}
