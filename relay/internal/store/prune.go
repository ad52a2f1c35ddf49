package store

import (
	"context"
	"fmt"
	"time"
)

// PruneStats counts what one Prune removed.
type PruneStats struct {
	Deliveries int64 // finished deliveries (their attempts go with them)
	Events     int64
	// StripeEvents are the ids of received Stripe events, kept to deduplicate resends.
	StripeEvents int64
	// Minutes and Hours are rows of relay.webhook_minutes and relay.webhook_hours (the
	// console's statistics).
	Minutes int64
	Hours   int64
}

// PruneBatch bounds each DELETE, so that pruning a large backlog is many short
// transactions rather than one long one (which would also hold back the outbox reader:
// watermill-sql sees nothing newer than the oldest open transaction).
const PruneBatch = 1000

// StripeResendWindow is how long Stripe keeps resending an event it got no 2xx for.
const StripeResendWindow = 72 * time.Hour

// Prune deletes, in batches of PruneBatch, finished deliveries (with their attempts)
// and events created before cutoff, and Stripe event ids received before
// stripeCutoff. It never touches a pending delivery, nor an event that still has a
// delivery or that the relays have not yet read.
func Prune(ctx context.Context, q Querier, cutoff, stripeCutoff time.Time) (PruneStats, error) {
	var st PruneStats
	steps := []struct {
		what string
		n    *int64
		sql  string
		args []any
	}{
		{"deliveries", &st.Deliveries, `DELETE FROM relay.deliveries WHERE id IN (
			SELECT id FROM relay.deliveries
			 WHERE status <> 'pending' AND created_at < $1
			 LIMIT $2)`, []any{cutoff, PruneBatch}},
		{"events", &st.Events, `DELETE FROM relay.outbox WHERE ("transaction_id", "offset") IN (
			SELECT o."transaction_id", o."offset"
			  FROM relay.outbox o, relay.outbox_offsets g
			 WHERE g.consumer_group = $3
			   AND o.created_at < $1
			   AND (o."transaction_id", o."offset") <= (g.last_processed_transaction_id, g.offset_acked)
			   AND NOT EXISTS (SELECT 1 FROM relay.deliveries d WHERE d.event_id = o."uuid"::uuid)
			 LIMIT $2)`, []any{cutoff, PruneBatch, ConsumerGroup}},
		{"webhook minutes", &st.Minutes, `DELETE FROM relay.webhook_minutes WHERE (webhook_id, minute) IN (
			SELECT webhook_id, minute FROM relay.webhook_minutes WHERE minute < $1 LIMIT $2)`, []any{cutoff, PruneBatch}},
		{"webhook hours", &st.Hours, `DELETE FROM relay.webhook_hours WHERE (webhook_id, hour) IN (
			SELECT webhook_id, hour FROM relay.webhook_hours WHERE hour < $1 LIMIT $2)`, []any{cutoff, PruneBatch}},
		// The Stripe ids are what makes a Stripe resend a no-op.
		{"stripe events", &st.StripeEvents, `DELETE FROM relay.stripe_events WHERE id IN (
			SELECT id FROM relay.stripe_events WHERE received_at < $1 LIMIT $2)`, []any{stripeCutoff, PruneBatch}},
	}
	for _, s := range steps {
		for {
			tag, err := q.Exec(ctx, s.sql, s.args...)
			if err != nil {
				return st, fmt.Errorf("prune %s: %w", s.what, err)
			}
			*s.n += tag.RowsAffected()
			if tag.RowsAffected() < PruneBatch {
				break
			}
		}
	}
	return st, nil
}
