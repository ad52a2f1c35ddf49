package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// An ordered webhook's deliveries of one key go one at a time (schema: 00011_ordering).
// A delivery is held (pending, no next_attempt_at) while an earlier one of its key is
// unfinished. The fan-out decides that when it creates the delivery; whoever finishes a
// key's delivery lets the next one go in the same transaction (releaseNextSQL), so no
// crash leaves a key held behind something that will never end.
//
// Each of those decisions reads a snapshot. A relay recording the end of a key's last
// unfinished delivery does not see a held one that a fan-out has not committed yet, and
// lets nothing go; the fan-out, for its part, saw that delivery still under way. So
// both look again once they have committed (ReleaseNext): whichever commits second
// sees the other's commit. A look that finds its key's next delivery being let go by
// another leaves it to that one (FOR UPDATE SKIP LOCKED), so looks never wait for each
// other or deadlock, and no lock is taken on the fan-out's path. SweepHeld is the
// backstop for a relay that died before its look.
//
// Nothing can make two deliveries of a key due at once: a delivery goes due only when
// nothing of its key is under way (in the snapshot of the statement that lets it go,
// and still held when that statement locks it), and what is under way only ends.

// releaseNextSQL sets due the earliest held delivery of the keys of the deliveries $1,
// unless something of the key is under way (in flight, waiting for a retry, or failed).
// Up to $3 of them it leases to
// $2 for $4, and returns them with what their attempts need, so that the relay that
// finished a key's delivery sends the next one at once (as the fan-out does); the
// others are left due, and then the claimers are notified. The first row returned is
// a header that counts all it set due.
const releaseNextSQL = `
WITH k AS (
    -- With the webhook's replay fence (00013_replay): while a replay of it runs, only
    -- what is before the replay's position goes.
    SELECT DISTINCT d.webhook_id, d.ordering_key, w.replay_fence_tx AS fence_tx, w.replay_fence_offset AS fence_offset
      FROM relay.deliveries d JOIN relay.webhooks w ON w.id = d.webhook_id
     WHERE d.id = ANY($1::bigint[]) AND d.ordering_key IS NOT NULL
), nxt AS (
    SELECT h.id, row_number() OVER (ORDER BY h.id) <= $3 AS lease
      FROM k CROSS JOIN LATERAL (
        SELECT b.id, b.event_tx, b.event_offset FROM relay.deliveries b
         WHERE b.webhook_id = k.webhook_id AND b.ordering_key = k.ordering_key
           AND b.status = 'pending' AND b.next_attempt_at IS NULL
         ORDER BY b.event_tx, b.event_offset
         LIMIT 1
      ) h
     WHERE NOT EXISTS (SELECT 1 FROM relay.deliveries a
                        WHERE a.webhook_id = k.webhook_id AND a.ordering_key = k.ordering_key
                          AND (a.status = 'failed' OR (a.status = 'pending' AND a.next_attempt_at IS NOT NULL)))
       AND (k.fence_tx IS NULL OR (h.event_tx, h.event_offset) <= (k.fence_tx, k.fence_offset))
), locked AS (
    -- In id order, skipping what another statement is letting go right now.
    SELECT d.id FROM relay.deliveries d
     WHERE d.id = ANY(ARRAY(SELECT id FROM nxt)) AND d.status = 'pending' AND d.next_attempt_at IS NULL
     ORDER BY d.id
       FOR UPDATE SKIP LOCKED
), rel AS (
    UPDATE relay.deliveries d
       SET next_attempt_at = now(),
           lease_owner = CASE WHEN nxt.lease THEN $2 END,
           lease_token = CASE WHEN nxt.lease THEN gen_random_uuid() END,
           lease_expires_at = CASE WHEN nxt.lease THEN now() + $4::interval END
      FROM nxt, locked
     WHERE d.id = nxt.id AND locked.id = nxt.id
    RETURNING d.id, d.lease_token, d.event_id, d.attempts, d.next_attempt_at, d.webhook_id, d.sign_stripe, d.ordering_key
), notified AS (
    SELECT pg_notify('relay_deliveries', '') FROM (SELECT 1 FROM rel WHERE lease_token IS NULL LIMIT 1) AS unleased
)
SELECT NULL::bigint, NULL::uuid, NULL::uuid, (SELECT count(*) FROM rel)::int, NULL::timestamptz, NULL::text, NULL::text, NULL::text,
       NULL::text, NULL::text, NULL::timestamptz, false, NULL::text, NULL::text
  FROM (SELECT count(*) FROM notified) AS n
UNION ALL
SELECT r.id, r.lease_token, r.event_id, r.attempts, r.next_attempt_at,
       w.id, w.target_url, coalesce(w.secret, ''),
       o.metadata ->> 'event', o.payload::text, o.created_at,
       (o.source = 'stripe' AND w.stripe_signature AND r.sign_stripe),
       coalesce(o.metadata ->> 'content_version', ''), r.ordering_key
  FROM rel r
  JOIN relay.webhooks w ON w.id = r.webhook_id
  JOIN relay.outbox o ON o."uuid"::uuid = r.event_id
 WHERE r.lease_token IS NOT NULL`

// Next says how many of the deliveries a release lets go it may lease to the caller
// (at most Limit, for Lease), which then sends them itself. Limit 0 leases none.
type Next struct {
	Limit int
	Lease time.Duration
}

// queueReleaseNext adds the release of the keys of ids to b; *leased receives what it
// leased to owner, and *released counts all it set due.
func queueReleaseNext(b *pgx.Batch, ids []int64, owner string, next Next, leased *[]Claimed, released *int) {
	b.Queue(releaseNextSQL, ids, owner, max(next.Limit, 0), next.Lease).Query(func(rows pgx.Rows) error {
		header := true
		for rows.Next() {
			if header {
				header = false
				vals, err := rows.Values()
				if err != nil {
					return err
				}
				*released = int(vals[3].(int32))
				continue
			}
			var c Claimed
			var body string
			if err := rows.Scan(&c.ID, &c.Token, &c.EventID, &c.Attempts, &c.DueAt, &c.WebhookID, &c.TargetURL, &c.Secret,
				&c.Event, &body, &c.CommittedAt, &c.StripeSign, &c.ContentVersion, &c.OrderingKey); err != nil {
				return err
			}
			c.Body = []byte(body)
			*leased = append(*leased, c)
		}
		return rows.Err()
	})
}

// ReleaseNext sets due the next delivery of the keys of the deliveries ids where
// nothing of the key is under way, and returns those it leased to owner and how many it
// set due in all. It is the second look of whoever held or finished those deliveries,
// run after their commit (see above).
func ReleaseNext(ctx context.Context, q Querier, ids []int64, owner string, next Next) ([]Claimed, int, error) {
	b := &pgx.Batch{}
	var leased []Claimed
	var released int
	queueReleaseNext(b, ids, owner, next, &leased, &released)
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, fmt.Errorf("release the next deliveries of %d keys: %w", len(ids), err)
	}
	return leased, released, nil
}

// sweepHeldSQL finds keys whose earliest unfinished delivery is held, older than $1,
// with nothing of the key under way: only a relay that died between a fan-out and its
// second look leaves one (see above). It reads every unfinished delivery of ordered
// keys, so it runs rarely.
const sweepHeldSQL = `
SELECT h.id
  FROM (SELECT DISTINCT ON (webhook_id, ordering_key) id, webhook_id, ordering_key, status, next_attempt_at, created_at
          FROM relay.deliveries
         WHERE ordering_key IS NOT NULL AND status IN ('pending', 'failed')
         ORDER BY webhook_id, ordering_key, event_tx, event_offset) AS h
 WHERE h.status = 'pending' AND h.next_attempt_at IS NULL AND h.created_at < now() - $1::interval
   AND NOT EXISTS (SELECT 1 FROM relay.deliveries a
                    WHERE a.webhook_id = h.webhook_id AND a.ordering_key = h.ordering_key
                      AND (a.status = 'failed' OR (a.status = 'pending' AND a.next_attempt_at IS NOT NULL)))
 LIMIT $2`

// SweepHeld lets go the keys held with nothing in front of them (see sweepHeldSQL) and
// returns how many deliveries it set due.
func SweepHeld(ctx context.Context, db Querier, olderThan time.Duration) (int, error) {
	rows, err := db.Query(ctx, sweepHeldSQL, olderThan, 1000)
	if err != nil {
		return 0, fmt.Errorf("sweep held deliveries: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	_, released, err := ReleaseNext(ctx, db, ids, "", Next{})
	return released, err
}

// skipSQL passes over a failed delivery, and releaseNextSQL then lets its key go on.
const skipSQL = `
UPDATE relay.deliveries SET status = 'skipped' WHERE id = $1 AND status = 'failed' RETURNING id`

// ErrNotFailed is returned by Skip for a delivery that exists but has not failed: only
// a failed delivery, which is what holds an ordered key, can be skipped.
var ErrNotFailed = errors.New("only a failed delivery can be skipped")

// Skip marks a failed delivery skipped, which lets the later deliveries of its ordered
// key go, and returns how many it let go (one, or none when the key has no delivery
// waiting or the webhook is not ordered). Its attempts stay as they were.
func Skip(ctx context.Context, db Beginner, id int64) (released int64, err error) {
	return SkipRecorded(ctx, db, id, nil)
}

// SkipRecorded is Skip that also runs record (when not nil) in the transaction that
// skips, after the delivery is marked skipped and its key let go and before the commit,
// so that a record of who skipped it (the console's relay.console_changes) commits with
// the skip or not at all; an error from record rolls the skip back. db must be a pool,
// not a transaction: the second look at the key has to come after the commit (see
// above).
func SkipRecorded(ctx context.Context, db Beginner, id int64, record func(pgx.Tx) error) (released int64, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("skip delivery %d: %w", id, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	var got int64
	if err := tx.QueryRow(ctx, skipSQL, id).Scan(&got); errors.Is(err, pgx.ErrNoRows) {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM relay.deliveries WHERE id = $1)`, id).Scan(&exists); err != nil {
			return 0, fmt.Errorf("skip delivery %d: %w", id, err)
		}
		if !exists {
			return 0, ErrNotFound
		}
		return 0, ErrNotFailed
	} else if err != nil {
		return 0, fmt.Errorf("skip delivery %d: %w", id, err)
	}
	var leased []Claimed
	var n int
	b := &pgx.Batch{}
	queueReleaseNext(b, []int64{id}, "", Next{}, &leased, &n)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("skip delivery %d: release its key: %w", id, err)
	}
	if record != nil {
		if err := record(tx); err != nil {
			return 0, fmt.Errorf("skip delivery %d: %w", id, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("skip delivery %d: %w", id, err)
	}
	_, again, err := ReleaseNext(ctx, db, []int64{id}, "", Next{})
	if err != nil {
		return int64(n), fmt.Errorf("skip delivery %d: second look at its key: %w", id, err)
	}
	return int64(n + again), nil
}
