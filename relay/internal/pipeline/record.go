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
	// sender is the claim side: told when a recorded delivery will be due again, so
	// that the claim loop can wake then, and given the next deliveries of ordered keys
	// that a record let go and leased to this relay.
	sender recordSender
}

// recordSender is what the recorder needs of the claim side (claimSubscriber).
type recordSender interface {
	retryDue(at time.Time)
	// nextLease says how many deliveries a record may lease to this relay.
	nextLease() store.Next
	// take sends deliveries leased to this relay.
	take(leased []store.Claimed, leasedAt time.Time, lease time.Duration)
	// lookAgain gives deliveries of ordered keys their second look (store.ReleaseNext).
	lookAgain(ids []int64)
}

type pending struct {
	out  store.Outcome
	done chan error
}

const maxRecordBatch = 500

func newRecorder(pool *pgxpool.Pool, owner string, log zerolog.Logger, sender recordSender) *recorder {
	return &recorder{pool: pool, owner: owner, log: log, in: make(chan *pending, maxRecordBatch), sender: sender}
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
	next := r.sender.nextLease()
	leasedAt := time.Now()
	recorded, err := r.write(ctx, outs, next)
	if len(recorded.Leased) > 0 {
		r.sender.take(recorded.Leased, leasedAt, next.Lease)
	}
	var keyed []int64
	for _, o := range outs {
		if o.Keyed && recorded.IDs[o.ID] {
			keyed = append(keyed, o.ID)
		}
	}
	r.sender.lookAgain(keyed)
	for _, p := range batch {
		switch {
		case err != nil:
			p.done <- err
		case !recorded.IDs[p.out.ID]:
			p.done <- errLeaseLost
		default:
			p.done <- nil
			if p.out.Status == store.Pending {
				r.sender.retryDue(p.out.NextAt)
			} else {
				r.finished.Add(1)
			}
		}
	}
}

// write retries transient failures (deadlocks between relays updating the same
// webhooks, a restarting PostgreSQL) for a while: a lost result means a duplicate POST.
func (r *recorder) write(ctx context.Context, outs []store.Outcome, next store.Next) (store.Recorded, error) {
	backoff := 50 * time.Millisecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		recorded, err := store.Record(ctx, r.pool, r.owner, outs, next)
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) || !store.Transient(err) {
			return recorded, err
		}
		r.log.Warn().Err(err).Int("attempts", len(outs)).Msg("recording attempts failed; retrying")
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return store.Recorded{}, err
		}
		backoff = min(2*backoff, time.Second)
	}
}
