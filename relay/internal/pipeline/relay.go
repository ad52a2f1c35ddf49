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
	claims, err := claimPool(ctx, r.pool)
	if err != nil {
		return err
	}
	defer claims.Close()
	keyed, err := keyedPool(ctx, r.pool)
	if err != nil {
		return err
	}
	defer keyed.Close()
	reader, err := outboxReaderPool(ctx, r.pool)
	if err != nil {
		return err
	}
	defer reader.Close()
	claimSub := newClaimSubscriber(r.pool, r.cfg, r.owner, notes.deliveries, r.log)
	claimSub.claims, claimSub.fanouts = claims, keyed
	rec := newRecorder(keyed, r.owner, r.log, claimSub)
	g.Go(func() error { return rec.run(recording) })
	g.Go(func() error { return claimSub.recheck.run(failed) })
	g.Go(func() error { return maintainer{db: r.pool, cfg: r.cfg, log: r.log}.run(failed) })
	g.Go(func() error { return (&vacuumer{pool: r.pool, log: r.log, rec: rec}).run(failed) })
	g.Go(func() error { return newReplayer(r.pool, r.log, r.cfg.ReplayRate, notes.replays).run(failed) })

	transport := newTransport(r.cfg)
	// Its keep-alive connections (and their goroutines) end with Run.
	defer transport.CloseIdleConnections()
	router, err := r.router(reader, notes, claimSub, rec, transport, closing, wlog)
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

// Plans. pgx prepares every statement, and after five executions PostgreSQL may switch
// to one generic plan, kept until the next ANALYZE of a table it reads, or go on
// planning each execution when the generic plan's estimate looks worse. The hot
// statements run on small pools of their own whose settings pick their plans:
//
//   - The claim is planned for its values each time (claimPool): it takes each webhook's
//     room, which a generic plan ignores; measured beside a replay, its generic plan
//     took 1.5 ms against 0.3 ms planned each time.
//   - The fan-out and the record keep one generic plan with sequential scans off
//     (keyedPool): they reach every row by key, and planning their large statements
//     cost as much as running them. Measured with fsync on: at 500 events/s the record
//     planned 1.45 ms for 1.96 ms of execution a call, its generic plan runs 0.3-1.3 ms
//     for 1-25 results; a 100-event fan-out planned 2.2 ms and ran 2.8-8 ms, generic
//     2.0-4.3 ms. Sequential scans off keeps a plan made while the tables were small
//     from scanning them once they are not (a generic record plan averaged 22.8 ms, max
//     564 ms, beside a replay, before this setting).
//
// Neither compiles its plans (jit off): a generic plan's estimates grow with the tables
// (the fan-out's reads a tenth of the outbox for an unknown LIMIT), and past
// jit_above_cost PostgreSQL compiled the fan-out at every execution, 150 ms of 190 at a
// 1,000,000-event backlog.
func claimPool(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Pool, error) {
	// One claim at a time, and a spare connection for a retry.
	return smallPool(ctx, pool, "claim", 2, map[string]string{"plan_cache_mode": "force_custom_plan", "jit": "off"})
}

func keyedPool(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Pool, error) {
	// One fan-out and one record batch at a time, and a spare connection for a retry.
	return smallPool(ctx, pool, "fan-out and the record", 3, map[string]string{"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off", "jit": "off"})
}

// outboxReaderPool is the outbox subscriber's: its transactions write only the consumer
// group's offset, and commit without waiting for the disk (synchronous_commit off). An
// offset lost with a server crash is read again, and a batch read again is a no-op: the
// fan-out, on its own durable pool, creates nothing for a pair that has a delivery.
// That takes one flush off the read → fan-out → ack cycle that an event waits for.
func outboxReaderPool(ctx context.Context, pool *pgxpool.Pool) (*pgxpool.Pool, error) {
	// watermill-sql reads with one transaction at a time; a spare connection for a retry.
	return smallPool(ctx, pool, "outbox reader", 2, map[string]string{"synchronous_commit": "off"})
}

// smallPool is a pool like pool with settings of its own and at most conns connections.
func smallPool(ctx context.Context, pool *pgxpool.Pool, what string, conns int32, settings map[string]string) (*pgxpool.Pool, error) {
	cfg := pool.Config().Copy()
	for k, v := range settings {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	cfg.MaxConns, cfg.MinConns = conns, 0
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("relay: pool for the %s: %w", what, err)
	}
	return p, nil
}

// router builds the Watermill router of the two stages.
func (r *Relay) router(reader *pgxpool.Pool, notes *notifier, claimSub *claimSubscriber, rec *recorder, transport *http.Transport, closing <-chan struct{}, wlog wmLogger) (*message.Router, error) {
	outboxSub, err := newOutboxSubscriber(reader, r.cfg, notes.outbox, closing, wlog)
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
