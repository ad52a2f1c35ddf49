package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// An ordered webhook's deliveries of one key go one at a time (schema: 00011_ordering).
// A delivery is held (pending, no next_attempt_at) while an earlier one of its key is
// unfinished. The fan-out decides that when it creates the delivery; whoever finishes a
// key's delivery lets the next one go in the same transaction (releaseNextSQL), so no
// crash leaves a key held with nothing in front of it.
//
// The fan-out's decision reads a snapshot: a relay recording the end of the key's
// delivery at that moment does not see the new, held one. So the fan-out looks at the
// keys it held again once it has committed (ReleaseNext). Both that look and every
// record take the keys' advisory locks first, in order, in a statement of their own: the
// look waits for a record in progress, and its snapshot, taken after, sees its result.
// The fan-out statement itself takes no lock, so it never waits for a record.
//
// Nothing can make two deliveries of a key due at once: a delivery goes due only when
// nothing of its key is under way, and what is under way only ends.

// lockKeysSQL takes the advisory locks of the keys of the deliveries $1 (see
// relay.key_lock) in order, before a record of their results touches them.
const lockKeysSQL = `
SELECT count(pg_advisory_xact_lock(k.lock))
  FROM (SELECT DISTINCT relay.key_lock(webhook_id, ordering_key) AS lock FROM relay.deliveries
         WHERE id = ANY($1::bigint[]) AND ordering_key IS NOT NULL ORDER BY 1) AS k`

// releaseNextSQL sets due the earliest held delivery of the keys of the deliveries $1,
// unless something of the key is under way (in flight, waiting for a retry, or failed).
// It runs after lockKeysSQL, as a statement of its own.
const releaseNextSQL = `
WITH k AS (
    SELECT DISTINCT webhook_id, ordering_key FROM relay.deliveries
     WHERE id = ANY($1::bigint[]) AND ordering_key IS NOT NULL
), nxt AS (
    SELECT h.id
      FROM k CROSS JOIN LATERAL (
        SELECT b.id FROM relay.deliveries b
         WHERE b.webhook_id = k.webhook_id AND b.ordering_key = k.ordering_key
           AND b.status = 'pending' AND b.next_attempt_at IS NULL
         ORDER BY b.event_tx, b.event_offset
         LIMIT 1
      ) h
     WHERE NOT EXISTS (SELECT 1 FROM relay.deliveries a
                        WHERE a.webhook_id = k.webhook_id AND a.ordering_key = k.ordering_key
                          AND (a.status = 'failed' OR (a.status = 'pending' AND a.next_attempt_at IS NOT NULL)))
), rel AS (
    UPDATE relay.deliveries d SET next_attempt_at = now()
      FROM nxt
     WHERE d.id = nxt.id AND d.status = 'pending' AND d.next_attempt_at IS NULL
    RETURNING d.id
), notified AS (
    SELECT pg_notify('relay_deliveries', '') FROM (SELECT 1 FROM rel LIMIT 1) AS any_released
)
SELECT (SELECT count(*) FROM rel), (SELECT count(*) FROM notified)`

// ReleaseNext sets due the next delivery of the keys of the deliveries ids where
// nothing of the key is under way, and returns how many it set due.
func ReleaseNext(ctx context.Context, q Querier, ids []int64) (int64, error) {
	b := &pgx.Batch{}
	b.Queue(lockKeysSQL, ids)
	var released, notified int64
	b.Queue(releaseNextSQL, ids).QueryRow(func(row pgx.Row) error { return row.Scan(&released, &notified) })
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("release the next deliveries of %d keys: %w", len(ids), err)
	}
	return released, nil
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
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("skip delivery %d: %w", id, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, lockKeysSQL, []int64{id}); err != nil {
		return 0, fmt.Errorf("skip delivery %d: %w", id, err)
	}
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
	var notified int64
	if err := tx.QueryRow(ctx, releaseNextSQL, []int64{id}).Scan(&released, &notified); err != nil {
		return 0, fmt.Errorf("skip delivery %d: release its key: %w", id, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("skip delivery %d: %w", id, err)
	}
	return released, nil
}
