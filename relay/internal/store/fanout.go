package store

import (
	"context"
	"fmt"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
)

// fanoutSQL creates one delivery per active webhook that matches an event and existed
// when it was emitted, for the event $1 and the events after it that this transaction
// can see (at most $2): the rest of the subscriber's batch, in one statement instead of
// one per event. The subscriber's REPEATABLE READ snapshot is the one its batch was
// read with, so "visible" means the same here. ON CONFLICT makes every replay a no-op
// (a batch re-read after a crash, events fanned out ahead of the consumer offset, a
// nack that re-runs the handler in the same transaction): one row per (event, webhook).
// Delivery ids follow (transaction_id, offset), which is the order first attempts start.
const fanoutSQL = `
WITH cur AS (
    SELECT transaction_id, "offset" FROM relay.outbox WHERE "uuid"::uuid = $1::uuid
), evs AS (
    -- LATERAL makes cur's values parameters of the index scan, which then starts at
    -- the current event; as a plain join the planner scans the outbox from its start.
    SELECT e.* FROM cur CROSS JOIN LATERAL (
        SELECT o."uuid", o.metadata ->> 'event' AS event, o.created_at, o.transaction_id, o."offset"
          FROM relay.outbox o
         WHERE (o.transaction_id, o."offset") >= (cur.transaction_id, cur."offset")
           AND o.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY o.transaction_id, o."offset"
         LIMIT $2
    ) e
), ins AS (
    INSERT INTO relay.deliveries (event_id, webhook_id, next_attempt_at)
    SELECT e."uuid"::uuid, w.id, now()
      FROM evs e
      JOIN relay.webhooks w
        ON w.status = 'active'
       AND w.created_at <= e.created_at
       AND relay.event_matches(w.event, e.event)
     ORDER BY e.transaction_id, e."offset", w.id
    ON CONFLICT (event_id, webhook_id) DO NOTHING
    RETURNING 1
), notified AS (
    SELECT pg_notify('relay_deliveries', '') FROM (SELECT 1 FROM ins LIMIT 1) AS any_new
)
SELECT e."uuid" FROM evs e, (SELECT count(*) FROM notified) AS n`

// FanOut creates the deliveries of event eventID and of the events after it that tx's
// snapshot sees, at most limit events, in tx (the outbox subscriber's own transaction,
// so the deliveries commit with the consumer offset). It returns the events it covered.
func FanOut(ctx context.Context, tx wsql.ContextExecutor, eventID string, limit int) (map[string]struct{}, error) {
	rows, err := tx.QueryContext(ctx, fanoutSQL, eventID, limit)
	if err != nil {
		return nil, fmt.Errorf("fan out event %s: %w", eventID, err)
	}
	covered := make(map[string]struct{}, limit)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			_ = rows.Close()
			return nil, fmt.Errorf("fan out event %s: %w", eventID, err)
		}
		covered[id] = struct{}{}
	}
	closeErr := rows.Close()
	// watermill-sql's Rows has no Err, but pgx reports a failed query only there.
	if r, ok := rows.(interface{ Err() error }); ok && closeErr == nil {
		closeErr = r.Err()
	}
	if closeErr != nil {
		return nil, fmt.Errorf("fan out event %s: %w", eventID, closeErr)
	}
	if _, ok := covered[eventID]; !ok {
		return nil, fmt.Errorf("fan out event %s: not visible to the subscriber's transaction", eventID)
	}
	return covered, nil
}
