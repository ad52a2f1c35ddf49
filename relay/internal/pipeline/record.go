package pipeline

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/store"
)

// recorder batches the outcomes of every in-flight attempt into one statement
// (store.Record): while one batch is being written, the next accumulates. This group
// commit is what keeps the database round trips per delivery well below one under load.
type recorder struct {
	pool  *pgxpool.Pool
	owner string
	log   zerolog.Logger
	in    chan *pending
	// finished counts deliveries recorded as succeeded or failed: each leaves a dead
	// entry in the pending-deliveries index until VACUUM (see vacuumer).
	finished atomic.Int64
	// retryDue is told when a recorded delivery will be due again, so that the claim
	// loop can wake then.
	retryDue func(at time.Time)
}

type pending struct {
	out  store.Outcome
	done chan error
}

const maxRecordBatch = 500

func newRecorder(pool *pgxpool.Pool, owner string, log zerolog.Logger, retryDue func(time.Time)) *recorder {
	return &recorder{pool: pool, owner: owner, log: log, in: make(chan *pending, maxRecordBatch), retryDue: retryDue}
}

// errLeaseLost means the attempt's lease had passed to another relay before its
// result could be written: the attempt is not recorded and the new holder owns it.
var errLeaseLost = errors.New("lease lost before the attempt was recorded")

// record queues out and waits until it is durably written (or ctx ends).
func (r *recorder) record(ctx context.Context, out store.Outcome) error {
	p := &pending{out: out, done: make(chan error, 1)}
	select {
	case r.in <- p:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run writes batches until ctx ends; callers stop sending before that.
func (r *recorder) run(ctx context.Context) error {
	batch := make([]*pending, 0, maxRecordBatch)
	for {
		select {
		case <-ctx.Done():
			return nil
		case p := <-r.in:
			batch = append(batch[:0], p)
		}
	drain:
		for len(batch) < maxRecordBatch {
			select {
			case p := <-r.in:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		r.flush(ctx, batch)
	}
}

func (r *recorder) flush(ctx context.Context, batch []*pending) {
	outs := make([]store.Outcome, len(batch))
	for i, p := range batch {
		outs[i] = p.out
	}
	recorded, err := r.write(ctx, outs)
	for _, p := range batch {
		switch {
		case err != nil:
			p.done <- err
		case !recorded[p.out.ID]:
			p.done <- errLeaseLost
		default:
			p.done <- nil
			if p.out.Status == store.Pending {
				r.retryDue(p.out.NextAt)
			} else {
				r.finished.Add(1)
			}
		}
	}
}

// write retries transient failures (deadlocks between relays updating the same
// webhooks, a restarting PostgreSQL) for a while: a lost result means a duplicate POST.
func (r *recorder) write(ctx context.Context, outs []store.Outcome) (map[int64]bool, error) {
	backoff := 50 * time.Millisecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		recorded, err := store.Record(ctx, r.pool, r.owner, outs)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) || !store.Transient(err) {
			return recorded, err
		}
		r.log.Warn().Err(err).Int("attempts", len(outs)).Msg("recording attempts failed; retrying")
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, err
		}
		backoff = min(2*backoff, time.Second)
	}
}
