package pipeline

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/store"
)

// rechecker gives the deliveries of ordered keys that a fan-out held or a record
// finished their second look (store.ReleaseNext), off the outbox handler's and the
// recorder's paths, many at a time. What it lets go and leases to this relay goes
// straight to the scheduler. If the relay stops before a look, the maintainer's sweep
// (store.SweepHeld) does it.
type rechecker struct {
	pool   *pgxpool.Pool
	owner  string
	log    zerolog.Logger
	sender recordSender

	mu   sync.Mutex
	ids  []int64
	wake chan struct{}
}

// recheckBatch bounds one look.
const recheckBatch = 5000

func newRechecker(pool *pgxpool.Pool, owner string, log zerolog.Logger, sender recordSender) *rechecker {
	return &rechecker{pool: pool, owner: owner, log: log, sender: sender, wake: make(chan struct{}, 1)}
}

// add queues held deliveries for their look.
func (r *rechecker) add(ids []int64) {
	if len(ids) == 0 {
		return
	}
	r.mu.Lock()
	r.ids = append(r.ids, ids...)
	r.mu.Unlock()
	wake(r.wake)
}

func (r *rechecker) take() []int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(len(r.ids), recheckBatch)
	ids := r.ids[:n:n]
	r.ids = r.ids[n:]
	if len(r.ids) > 0 {
		wake(r.wake)
	}
	return ids
}

func (r *rechecker) run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		}
		ids := r.take()
		if len(ids) == 0 {
			continue
		}
		next := r.sender.nextLease()
		at := time.Now()
		leased, _, err := store.ReleaseNext(ctx, r.pool, ids, r.owner, next)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Put them back: a look that failed (PostgreSQL restarting) is tried again.
			r.log.Warn().Err(err).Int("deliveries", len(ids)).Msg("second look at held deliveries failed; retrying")
			r.add(ids)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		if len(leased) > 0 {
			r.sender.take(leased, at, next.Lease)
		}
	}
}
