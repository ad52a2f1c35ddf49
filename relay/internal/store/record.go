package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Outcome is one finished attempt and the state it leaves its delivery in.
type Outcome struct {
	Lease
	Started    time.Time
	Duration   time.Duration
	StatusCode int    // 0 when no response arrived
	Error      string // the relay's words; empty on 2xx
	GhostError string // Ghost's words, for webhooks.last_triggered_error; empty on 2xx
	Excerpt    string // the start of a failed response
	FinalURL   string // where a followed redirect ended; empty without one
	Status     Status // Pending (retry at NextAt), Succeeded or Failed
	NextAt     time.Time
	// CommittedAt is the event's created_at: the lag of a success is counted from it.
	CommittedAt time.Time
	// Keyed says the delivery belongs to an ordered key (Claimed.OrderingKey): when it
	// finishes, the key's next delivery is let go in the same transaction.
	Keyed bool
}

// recordSQL writes a whole batch of outcomes in one statement: the attempt rows, the
// deliveries' new state, and each webhook's last_triggered_*. It is fenced by the lease
// token, so a relay that lost its lease cannot overwrite the new holder's work, and a
// delivery cancelled meanwhile stays cancelled (its attempt is still recorded).
const recordSQL = `
WITH r AS (
    SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::timestamptz[], $4::int[], $5::int[],
                         $6::text[], $7::text[], $8::text[], $9::timestamptz[], $11::text[], $12::text[],
                         $13::int[], $14::int[])
        AS r(id, token, started_at, duration_ms, status_code, error, excerpt, status, next_at, ghost_error, final_url,
             duration_bucket, lag_bucket)
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
              r.error, r.excerpt, r.status, r.ghost_error, r.final_url, r.duration_bucket, r.lag_bucket
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
), minutes AS (
    -- Ordered by key, so that relays recording for the same webhooks lock the rows in
    -- the same order.
    INSERT INTO relay.webhook_minutes AS m (webhook_id, minute, attempts, succeeded, retried, failed,
           d1, d2, d3, d4, d5, d6, d7, d8, d9, d10,
           l1, l2, l3, l4, l5, l6, l7, l8, l9, l10)
    SELECT u.webhook_id, date_trunc('minute', u.started_at + u.duration_ms * interval '1 millisecond'),
           count(*), count(*) FILTER (WHERE u.status = 'succeeded'),
           count(*) FILTER (WHERE u.status = 'pending'), count(*) FILTER (WHERE u.status = 'failed'),
           count(*) FILTER (WHERE u.duration_bucket = 1),
           count(*) FILTER (WHERE u.duration_bucket = 2),
           count(*) FILTER (WHERE u.duration_bucket = 3),
           count(*) FILTER (WHERE u.duration_bucket = 4),
           count(*) FILTER (WHERE u.duration_bucket = 5),
           count(*) FILTER (WHERE u.duration_bucket = 6),
           count(*) FILTER (WHERE u.duration_bucket = 7),
           count(*) FILTER (WHERE u.duration_bucket = 8),
           count(*) FILTER (WHERE u.duration_bucket = 9),
           count(*) FILTER (WHERE u.duration_bucket = 10),
           count(*) FILTER (WHERE u.lag_bucket = 1),
           count(*) FILTER (WHERE u.lag_bucket = 2),
           count(*) FILTER (WHERE u.lag_bucket = 3),
           count(*) FILTER (WHERE u.lag_bucket = 4),
           count(*) FILTER (WHERE u.lag_bucket = 5),
           count(*) FILTER (WHERE u.lag_bucket = 6),
           count(*) FILTER (WHERE u.lag_bucket = 7),
           count(*) FILTER (WHERE u.lag_bucket = 8),
           count(*) FILTER (WHERE u.lag_bucket = 9),
           count(*) FILTER (WHERE u.lag_bucket = 10)
      FROM upd u
     GROUP BY 1, 2
     ORDER BY 1, 2
    ON CONFLICT (webhook_id, minute) DO UPDATE
       SET attempts = m.attempts + excluded.attempts, succeeded = m.succeeded + excluded.succeeded,
           retried = m.retried + excluded.retried, failed = m.failed + excluded.failed,
           d1 = m.d1 + excluded.d1, d2 = m.d2 + excluded.d2, d3 = m.d3 + excluded.d3, d4 = m.d4 + excluded.d4, d5 = m.d5 + excluded.d5, d6 = m.d6 + excluded.d6, d7 = m.d7 + excluded.d7, d8 = m.d8 + excluded.d8, d9 = m.d9 + excluded.d9, d10 = m.d10 + excluded.d10, l1 = m.l1 + excluded.l1, l2 = m.l2 + excluded.l2, l3 = m.l3 + excluded.l3, l4 = m.l4 + excluded.l4, l5 = m.l5 + excluded.l5, l6 = m.l6 + excluded.l6, l7 = m.l7 + excluded.l7, l8 = m.l8 + excluded.l8, l9 = m.l9 + excluded.l9, l10 = m.l10 + excluded.l10
)
SELECT id FROM upd`

// Recorded is what a Record did.
type Recorded struct {
	// IDs are the deliveries whose outcome was written: an outcome whose lease passed to
	// another relay meanwhile is not (its new holder owns the delivery).
	IDs map[int64]bool
	// Leased are the next deliveries of ordered keys that the successes let go, leased
	// to the owner (see Next).
	Leased []Claimed
}

// Record writes outcomes for owner in one statement; for ordered keys it lets their next
// deliveries go in the same transaction, leasing them as next says. The caller gives
// the keyed outcomes their second look (ReleaseNext) once Record has returned.
func Record(ctx context.Context, q Querier, owner string, outcomes []Outcome, next Next) (Recorded, error) {
	n := len(outcomes)
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
	durBuckets := make([]int32, n)
	lagBuckets := make([]int32, n) // 0: not a success, no lag counted
	for i, o := range outcomes {
		durBuckets[i] = bucketOf(o.Duration.Milliseconds(), DurationBuckets[:])
		if o.Status == Succeeded {
			lagBuckets[i] = bucketOf(max(o.Started.Add(o.Duration).Sub(o.CommittedAt), 0).Milliseconds(), LagBuckets[:])
		}
		ids[i], tokens[i], started[i] = o.ID, o.Token, o.Started
		durations[i] = int32(o.Duration.Milliseconds())
		if o.StatusCode != 0 {
			c := int32(o.StatusCode)
			codes[i] = &c
		}
		errs[i], excerpts[i], ghostErrs[i], finalURLs[i] = nonEmpty(o.Error), nonEmpty(o.Excerpt), nonEmpty(o.GhostError), nonEmpty(o.FinalURL)
		statuses[i] = string(o.Status)
		if o.Status == Pending {
			t := o.NextAt
			nextAts[i] = &t
		}
	}
	// The results, and for ordered keys the release of their next deliveries, go in one
	// batch: one round trip and one implicit transaction, so they commit together.
	b := &pgx.Batch{}
	keyed := keyedOutcomes(outcomes)
	recorded := Recorded{IDs: make(map[int64]bool, n)}
	b.Queue(recordSQL, ids, tokens, started, durations, codes, errs, excerpts, statuses, nextAts, owner, ghostErrs, finalURLs, durBuckets, lagBuckets).
		Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var id int64
				if err := rows.Scan(&id); err != nil {
					return err
				}
				recorded.IDs[id] = true
			}
			return rows.Err()
		})
	var released int
	if len(keyed) > 0 {
		queueReleaseNext(b, keyed, owner, next, &recorded.Leased, &released)
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return Recorded{}, fmt.Errorf("record %d attempts: %w", n, err)
	}
	return recorded, nil
}

// keyedOutcomes are the ids of the outcomes of ordered keys.
func keyedOutcomes(outcomes []Outcome) []int64 {
	var ids []int64
	for _, o := range outcomes {
		if o.Keyed {
			ids = append(ids, o.ID)
		}
	}
	return ids
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// DurationBuckets and LagBuckets are the upper bounds (ms) of the buckets in which
// relay.webhook_minutes counts attempt durations and, for successful attempts, the time
// from the event's commit to its receipt; a last bucket holds everything above.
var (
	DurationBuckets = [...]int64{10, 50, 100, 250, 500, 1000, 2500, 5000, 10000}
	LagBuckets      = [...]int64{10, 50, 100, 250, 500, 1000, 5000, 60000, 3600000}
)

// BucketColumns are the bucket columns of relay.webhook_minutes and
// relay.webhook_hours, in order: the attempt durations d1..d10 (DurationBuckets and the
// bucket above them), then the commit-to-receipt lags l1..l10 (LagBuckets likewise).
var BucketColumns = func() []string {
	var cols []string
	for _, c := range []struct {
		prefix string
		n      int
	}{{"d", len(DurationBuckets) + 1}, {"l", len(LagBuckets) + 1}} {
		for i := 1; i <= c.n; i++ {
			cols = append(cols, fmt.Sprintf("%s%d", c.prefix, i))
		}
	}
	return cols
}()

// bucketOf is the 1-based bucket of ms for bounds.
func bucketOf(ms int64, bounds []int64) int32 {
	for i, b := range bounds {
		if ms <= b {
			return int32(i + 1)
		}
	}
	return int32(len(bounds) + 1)
}
