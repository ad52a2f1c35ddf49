package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// PruneStats counts what one Prune removed.
type PruneStats struct {
	// Deliveries are finished deliveries (their attempts go with them): those past the
	// delivery retention, and those of the events pruned.
	Deliveries int64
	Events     int64
	// StripeEvents are the ids of received Stripe events, kept to deduplicate resends.
	StripeEvents int64
	// Minutes and Hours are rows of relay.webhook_minutes and relay.webhook_hours (the
	// console's statistics).
	Minutes int64
	Hours   int64
}

// Cutoffs say what Prune removes: what was created before each time. A zero time keeps
// everything of its kind.
type Cutoffs struct {
	// Deliveries prunes finished deliveries (with their attempts) and the webhooks'
	// per-minute and hourly statistics (RELAY_RETENTION).
	Deliveries time.Time
	// Events prunes events (RELAY_EVENT_RETENTION); see pruneEventsBatch for which.
	Events time.Time
	// StripeIDs prunes the ids of received Stripe events.
	StripeIDs time.Time
}

// PruneBatch bounds each DELETE, so that pruning a large backlog is many short
// transactions rather than one long one (which would also hold back the outbox reader:
// watermill-sql sees nothing newer than the oldest open transaction).
const PruneBatch = 1000

// StripeResendWindow is how long Stripe keeps resending an event it got no 2xx for.
const StripeResendWindow = 72 * time.Hour

// The DELETEs of the history other than events, each bounded by $2 rows.
const (
	// A pending delivery is work still to do, whatever its age; a failed one of an
	// ordered webhook holds its key's later deliveries until it is redelivered or
	// skipped (00011_ordering), and deleting it would hold them for ever.
	//
	// The old ones are found webhook by webhook on deliveries_webhook_idx (webhook_id,
	// created_at), whose distinct webhook ids (deleted webhooks' too) the recursive part
	// walks one index probe each: a plain "created_at < $1" has no index to use, and
	// scanned every delivery on every pass, finding nothing most of the time (measured:
	// 1.2 s a pass at 1.6 million deliveries, against 4 ms this way).
	pruneDeliveriesSQL = `DELETE FROM relay.deliveries WHERE id IN (
		WITH RECURSIVE hooks AS (
		    SELECT min(webhook_id) AS id FROM relay.deliveries
		    UNION ALL
		    SELECT (SELECT min(d.webhook_id) FROM relay.deliveries d WHERE d.webhook_id > h.id)
		      FROM hooks h WHERE h.id IS NOT NULL
		)
		SELECT old.id FROM hooks CROSS JOIN LATERAL (
		    SELECT d.id FROM relay.deliveries d
		     WHERE d.webhook_id = hooks.id AND d.created_at < $1
		       AND d.status <> 'pending' AND NOT (d.status = 'failed' AND d.ordering_key IS NOT NULL)
		     LIMIT $2
		) AS old
		LIMIT $2)`
	pruneMinutesSQL = `DELETE FROM relay.webhook_minutes WHERE (webhook_id, minute) IN (
		SELECT webhook_id, minute FROM relay.webhook_minutes WHERE minute < $1 LIMIT $2)`
	pruneHoursSQL = `DELETE FROM relay.webhook_hours WHERE (webhook_id, hour) IN (
		SELECT webhook_id, hour FROM relay.webhook_hours WHERE hour < $1 LIMIT $2)`
	// The Stripe ids are what makes a Stripe resend a no-op.
	pruneStripeIDsSQL = `DELETE FROM relay.stripe_events WHERE id IN (
		SELECT id FROM relay.stripe_events WHERE received_at < $1 LIMIT $2)`
)

// Prune deletes, in batches of PruneBatch rows, what was created before c's cutoffs:
// finished deliveries (with their attempts), then events, then per-minute and hourly
// statistics and Stripe event ids. It never touches a pending delivery, nor a failed one that
// holds an ordered key, nor an event that has a pending or failed delivery or that the
// relays have not yet read.
func Prune(ctx context.Context, db Beginner, c Cutoffs) (PruneStats, error) {
	var st PruneStats
	// Deliveries first: the events they leave without work can go in the same pass.
	if err := pruneRows(ctx, db, "deliveries", pruneDeliveriesSQL, c.Deliveries, &st.Deliveries); err != nil {
		return st, err
	}
	if err := pruneEvents(ctx, db, c.Events, &st); err != nil {
		return st, err
	}
	if err := pruneRows(ctx, db, "webhook minutes", pruneMinutesSQL, c.Deliveries, &st.Minutes); err != nil {
		return st, err
	}
	if err := pruneRows(ctx, db, "webhook hours", pruneHoursSQL, c.Deliveries, &st.Hours); err != nil {
		return st, err
	}
	return st, pruneRows(ctx, db, "stripe events", pruneStripeIDsSQL, c.StripeIDs, &st.StripeEvents)
}

// pruneRows runs a bounded DELETE until a batch comes back short; a zero cutoff skips it.
func pruneRows(ctx context.Context, q Querier, what, sql string, cutoff time.Time, n *int64) error {
	if cutoff.IsZero() {
		return nil
	}
	for {
		tag, err := q.Exec(ctx, sql, cutoff, PruneBatch)
		if err != nil {
			return fmt.Errorf("prune %s: %w", what, err)
		}
		*n += tag.RowsAffected()
		if tag.RowsAffected() < PruneBatch {
			return nil
		}
	}
}

// pruneCandidatesSQL locks a batch of events that may go: created before $1, read by the
// consumer group $3 (at or before its acknowledged position), and with no delivery that
// is pending (work to do) or failed (which may be redelivered, and that needs the body).
// The lock makes anyone who creates a delivery for an old event (a replay) and reads it
// FOR KEY SHARE either wait for this transaction, then find the event gone, or hold the
// event first, and then it is skipped. No ORDER BY: the BRIN index on created_at finds
// the old block ranges, and the scan stops at the batch's end.
const pruneCandidatesSQL = `
SELECT o."uuid"::uuid
  FROM relay.outbox o, relay.outbox_offsets g
 WHERE g.consumer_group = $3
   AND o.created_at < $1
   AND (o.transaction_id, o."offset") <= (g.last_processed_transaction_id, g.offset_acked)
   AND NOT EXISTS (SELECT 1 FROM relay.deliveries d
                    WHERE d.event_id = o."uuid"::uuid AND d.status IN ('pending', 'failed'))
 LIMIT $2
   FOR UPDATE OF o SKIP LOCKED`

// pruneEventDeliveriesSQL deletes the candidates' finished deliveries, which mean
// nothing without their event. A delivery redelivered since the candidates were read
// (now pending) is re-checked on its locked row and kept.
const pruneEventDeliveriesSQL = `
DELETE FROM relay.deliveries
 WHERE event_id = ANY($1::uuid[]) AND status NOT IN ('pending', 'failed')`

// pruneEventsSQL deletes the candidates left without deliveries. It is a statement of
// its own so that its snapshot sees what committed while the ones above ran: a delivery
// redelivered or created meanwhile keeps its event.
const pruneEventsSQL = `
DELETE FROM relay.outbox o
 WHERE o."uuid"::uuid = ANY($1::uuid[])
   AND NOT EXISTS (SELECT 1 FROM relay.deliveries d WHERE d.event_id = o."uuid"::uuid)`

// pruneEvents prunes events created before cutoff, batch by batch; a zero cutoff keeps
// them all.
func pruneEvents(ctx context.Context, db Beginner, cutoff time.Time, st *PruneStats) error {
	if cutoff.IsZero() {
		return nil
	}
	for {
		n, err := pruneEventsBatch(ctx, db, cutoff, st)
		if err != nil {
			return fmt.Errorf("prune events: %w", err)
		}
		if n < PruneBatch {
			return nil
		}
	}
}

// pruneEventsBatch prunes at most PruneBatch events created before cutoff, with their
// finished deliveries, in one short transaction, and returns how many candidates it
// found (the loop goes on while batches are full).
func pruneEventsBatch(ctx context.Context, db Beginner, cutoff time.Time, st *PruneStats) (int, error) {
	var found int
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, pruneCandidatesSQL, cutoff, PruneBatch, ConsumerGroup)
		if err != nil {
			return fmt.Errorf("find events: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("find events: %w", err)
		}
		found = len(ids)
		if found == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, pruneEventDeliveriesSQL, ids)
		if err != nil {
			return fmt.Errorf("delete their finished deliveries: %w", err)
		}
		deliveries := tag.RowsAffected()
		if tag, err = tx.Exec(ctx, pruneEventsSQL, ids); err != nil {
			return fmt.Errorf("delete them: %w", err)
		}
		st.Deliveries += deliveries
		st.Events += tag.RowsAffected()
		return nil
	})
	return found, err
}
