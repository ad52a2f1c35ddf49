package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/metrics"
)

const (
	statusPending   = "pending"
	statusSucceeded = "succeeded"
	statusFailed    = "failed"
	statusCancelled = "cancelled"
)

// result is an attempt and the delivery state it leads to.
type result struct {
	Delivery *claimed
	Attempt  attemptResult
	Status   string    // pending (retry at NextAt), succeeded or failed
	NextAt   time.Time // when Status is pending
}

// recordSQL writes a whole batch of results in one statement: the attempt rows, the
// deliveries' new state, and each webhook's last_triggered_*. It is fenced by the lease
// token, so a relay that lost its lease cannot overwrite the new holder's work, and a
// delivery cancelled meanwhile stays cancelled (its attempt is still recorded).
const recordSQL = `
WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::int[], $5::int[],
                         $6::text[], $7::text[], $8::text[], $9::timestamptz[], $11::text[], $12::text[])
        AS r(id, token, started_at, duration_ms, status_code, error, excerpt, status, next_at, ghost_error, final_url)
), upd AS (
    UPDATE relay.deliveries d
       SET attempts = d.attempts + 1,
           status = CASE WHEN d.status = 'pending' THEN r.status ELSE d.status END,
           next_attempt_at = CASE WHEN d.status = 'pending' AND r.status = 'pending' THEN r.next_at END,
           lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL,
           last_status_code = r.status_code,
           last_error = r.error,
           delivered_at = CASE WHEN r.status = 'succeeded' THEN now() ELSE d.delivered_at END
      FROM r
     -- The redundant = ANY lets the planner find the rows by primary key instead of
     -- hash-joining a scan of every delivery.
     WHERE d.id = ANY($1::bigint[]) AND d.id = r.id AND d.lease_token = r.token
    RETURNING d.id, d.attempts, d.webhook_id, r.started_at, r.duration_ms, r.status_code,
              r.error, r.excerpt, r.status, r.ghost_error, r.final_url
), att AS (
    INSERT INTO relay.delivery_attempts
           (delivery_id, attempt, started_at, duration_ms, status_code, error, response_excerpt, relay_instance, final_url)
    SELECT id, attempts, started_at, duration_ms, status_code, error, excerpt, $10, final_url FROM upd
), last AS (
    -- Ghost's last_triggered_*: when the last request finished, its status code as
    -- text, and Ghost's wording of its error.
    SELECT DISTINCT ON (webhook_id) webhook_id,
           started_at + duration_ms * interval '1 millisecond' AS finished_at, status_code, error, ghost_error,
           bool_or(status = 'succeeded') OVER (PARTITION BY webhook_id) AS any_success
      FROM upd
     ORDER BY webhook_id, started_at DESC
), wh AS (
    UPDATE relay.webhooks w
       SET last_triggered_at = l.finished_at,
           last_triggered_status = l.status_code::text,
           last_triggered_error = l.ghost_error,
           last_attempt_error = l.error,
           last_success_at = CASE WHEN l.any_success THEN now() ELSE w.last_success_at END,
           failing_since = CASE WHEN l.any_success THEN NULL
                                ELSE coalesce(w.failing_since, l.finished_at) END
      FROM last l
     WHERE w.id = l.webhook_id
)
SELECT id FROM upd`

// recorder batches results from every in-flight attempt into one statement: while one
// batch is being written, the next accumulates. This group commit is what keeps the
// database round trips per delivery well below one under load.
type recorder struct {
	pool  *pgxpool.Pool
	owner string
	// finished counts deliveries recorded as succeeded or failed: each leaves a dead
	// entry in the pending-deliveries index until VACUUM (see vacuumer).
	finished atomic.Int64
	log      zerolog.Logger
	in       chan *pending
	// onRetry is told when a delivery will be due again, so a poller can wake then.
	onRetry func(at time.Time)
}

type pending struct {
	res  result
	done chan error
}

const maxRecordBatch = 500

func newRecorder(pool *pgxpool.Pool, owner string, log zerolog.Logger) *recorder {
	return &recorder{pool: pool, owner: owner, log: log, in: make(chan *pending, maxRecordBatch)}
}

// errLeaseLost means the attempt's lease had passed to another relay before its
// result could be written: the attempt is not recorded and the new holder owns it.
var errLeaseLost = errors.New("lease lost before the attempt was recorded")

// record queues res and waits until it is durably written (or ctx ends).
func (r *recorder) record(ctx context.Context, res result) error {
	p := &pending{res: res, done: make(chan error, 1)}
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
func (r *recorder) run(ctx context.Context) {
	batch := make([]*pending, 0, maxRecordBatch)
	for {
		select {
		case <-ctx.Done():
			return
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
	recorded, err := r.write(ctx, batch)
	for _, p := range batch {
		switch {
		case err != nil:
			p.done <- err
		case !recorded[p.res.Delivery.ID]:
			p.done <- errLeaseLost
		default:
			p.done <- nil
			if p.res.Status == statusPending && r.onRetry != nil {
				r.onRetry(p.res.NextAt)
			} else if p.res.Status != statusPending {
				r.finished.Add(1)
			}
		}
	}
}

// write retries transient failures (deadlocks between relays updating the same
// webhooks, a restarting PostgreSQL) for a while: a lost result means a duplicate POST.
func (r *recorder) write(ctx context.Context, batch []*pending) (map[int64]bool, error) {
	n := len(batch)
	ids := make([]int64, n)
	tokens := make([]string, n)
	started := make([]time.Time, n)
	durations := make([]int32, n)
	codes := make([]*int32, n)
	errs := make([]*string, n)
	excerpts := make([]*string, n)
	statuses := make([]string, n)
	nextAts := make([]*time.Time, n)
	ghostErrs := make([]*string, n)
	finalURLs := make([]*string, n)
	for i, p := range batch {
		res := p.res
		ids[i] = res.Delivery.ID
		tokens[i] = res.Delivery.LeaseToken
		started[i] = res.Attempt.Started
		durations[i] = int32(res.Attempt.Duration.Milliseconds())
		if res.Attempt.StatusCode != 0 {
			c := int32(res.Attempt.StatusCode)
			codes[i] = &c
		}
		if res.Attempt.Error != "" {
			e := res.Attempt.Error
			errs[i] = &e
		}
		if res.Attempt.Excerpt != "" {
			x := res.Attempt.Excerpt
			excerpts[i] = &x
		}
		statuses[i] = res.Status
		if res.Attempt.GhostError != "" {
			e := res.Attempt.GhostError
			ghostErrs[i] = &e
		}
		if res.Attempt.FinalURL != "" {
			u := res.Attempt.FinalURL
			finalURLs[i] = &u
		}
		if res.Status == statusPending {
			t := res.NextAt
			nextAts[i] = &t
		}
	}
	backoff := 50 * time.Millisecond
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows, err := r.pool.Query(ctx, recordSQL, ids, tokens, started, durations, codes, errs, excerpts, statuses, nextAts, r.owner, ghostErrs, finalURLs)
		var recorded map[int64]bool
		if err == nil {
			recorded = make(map[int64]bool, n)
			for rows.Next() {
				var id int64
				if err = rows.Scan(&id); err != nil {
					break
				}
				recorded[id] = true
			}
			rows.Close()
			if err == nil {
				err = rows.Err()
			}
		}
		if err == nil {
			return recorded, nil
		}
		if ctx.Err() != nil || time.Now().After(deadline) || !transient(err) {
			return nil, fmt.Errorf("record %d attempts: %w", n, err)
		}
		r.log.Warn().Err(err).Int("attempts", n).Msg("recording attempts failed; retrying")
		time.Sleep(backoff)
		backoff = min(2*backoff, time.Second)
	}
}

// transient reports errors worth retrying: serialization failures, deadlocks, and
// connection-level failures (no SQLSTATE at all).
func transient(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "40001", "40P01", "57P01", "57P02", "57P03", "08000", "08003", "08006":
			return true
		}
		return false
	}
	return true
}

// disabler turns webhooks off and cancels their pending deliveries.
type disabler struct {
	pool    *pgxpool.Pool
	log     zerolog.Logger
	metrics *metrics.Metrics
}

// disableSQL reports whether this statement disabled the webhook, so that concurrent
// 410s (or another relay) log and count the state change once.
const disableSQL = `
WITH w AS (
    UPDATE relay.webhooks SET status = 'disabled', disabled_reason = $2
     WHERE id = $1 AND status = 'active'
    RETURNING id
), c AS (
    UPDATE relay.deliveries d
       SET status = 'cancelled', next_attempt_at = NULL, last_error = 'webhook disabled: ' || $2
      FROM w
     WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.id <> $3
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM w), (SELECT count(*) FROM c)`

// disable disables the webhook for reason; kind is the metrics.Disabled* label.
// disable turns a webhook off and cancels its pending deliveries, except the delivery
// whose attempt caused it (its own result records it as failed).
func (s *disabler) disable(ctx context.Context, webhookID, kind, reason string, except int64) error {
	var disabled bool
	var cancelled int64
	if err := s.pool.QueryRow(ctx, disableSQL, webhookID, reason, except).Scan(&disabled, &cancelled); err != nil {
		return fmt.Errorf("disable webhook %s: %w", webhookID, err)
	}
	if !disabled {
		return nil // already disabled, by another attempt or relay
	}
	s.metrics.WebhookDisabled(kind, cancelled)
	s.log.Warn().Str("webhook_id", webhookID).Str("reason", reason).
		Int64("cancelled_deliveries", cancelled).Msg("webhook disabled")
	return nil
}
