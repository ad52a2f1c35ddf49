package pipeline

import (
	"context"
	"fmt"
	"time"

	"github.com/relayhq/relay/relay/internal/metrics"
)

// maintainer runs the periodic housekeeping: disabling webhooks that have failed for
// too long, and pruning finished history past the retention window. Every statement is
// short and bounded, so it never holds up delivery; several relays may run it at once.
type maintainer struct {
	r *Relay
}

// pruneBatch bounds each DELETE so that pruning a large backlog is many short
// transactions rather than one long one (which would also hold back the outbox reader:
// watermill-sql sees nothing newer than the oldest open transaction).
const pruneBatch = 1000

func (m maintainer) interval() time.Duration {
	iv := time.Minute
	if d := m.r.cfg.DisableAfter; d > 0 {
		iv = min(iv, d/10)
	}
	if d := m.r.cfg.Retention; d > 0 {
		iv = min(iv, d/10)
	}
	return max(iv, 100*time.Millisecond)
}

func (m maintainer) run(ctx context.Context) {
	t := time.NewTicker(m.interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := m.disableFailing(ctx); err != nil && ctx.Err() == nil {
			m.r.log.Warn().Err(err).Msg("auto-disable check failed")
		}
		if _, err := m.r.Prune(ctx); err != nil && ctx.Err() == nil {
			m.r.log.Warn().Err(err).Msg("retention prune failed")
		}
	}
}

const disableFailingSQL = `
WITH w AS (
    UPDATE relay.webhooks
       SET status = 'disabled',
           disabled_reason = format('no successful delivery since %s (failing for longer than %s)',
                                    to_char(failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), $2::text)
     WHERE status = 'active' AND failing_since < now() - $1::interval
    RETURNING id, disabled_reason
), c AS (
    UPDATE relay.deliveries d
       SET status = 'cancelled', next_attempt_at = NULL, last_error = 'webhook disabled: ' || w.disabled_reason
      FROM w
     WHERE d.webhook_id = w.id AND d.status = 'pending'
    RETURNING d.webhook_id
)
SELECT id, disabled_reason, (SELECT count(*) FROM c WHERE c.webhook_id = w.id) FROM w`

func (m maintainer) disableFailing(ctx context.Context) error {
	d := m.r.cfg.DisableAfter
	if d <= 0 {
		return nil
	}
	rows, err := m.r.pool.Query(ctx, disableFailingSQL, fmt.Sprintf("%d milliseconds", d.Milliseconds()), d.String())
	if err != nil {
		return fmt.Errorf("disable failing webhooks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, reason string
		var cancelled int64
		if err := rows.Scan(&id, &reason, &cancelled); err != nil {
			return fmt.Errorf("disable failing webhooks: %w", err)
		}
		m.r.cfg.Metrics.WebhookDisabled(metrics.DisabledFailing, cancelled)
		m.r.log.Warn().Str("webhook_id", id).Str("reason", reason).Int64("cancelled_deliveries", cancelled).Msg("webhook disabled")
	}
	return rows.Err()
}

// PruneStats counts what one Prune removed.
type PruneStats struct {
	Deliveries int64 // finished deliveries (their attempts go with them)
	Events     int64
	// StripeEvents are the ids of received Stripe events, kept to deduplicate resends.
	StripeEvents int64
}

// stripeResendWindow is how long Stripe keeps resending an event it got no 2xx for.
const stripeResendWindow = 72 * time.Hour

// Prune deletes finished deliveries (with their attempts) and events older than the
// retention window, in bounded batches. It never touches pending deliveries, nor an
// event that still has a delivery or that the relay has not yet read.
func (r *Relay) Prune(ctx context.Context) (PruneStats, error) {
	var st PruneStats
	if r.cfg.Retention <= 0 {
		return st, nil
	}
	cutoff := time.Now().Add(-r.cfg.Retention)
	for {
		tag, err := r.pool.Exec(ctx, `DELETE FROM relay.deliveries WHERE id IN (
			SELECT id FROM relay.deliveries
			 WHERE status <> 'pending' AND created_at < $1
			 LIMIT $2)`, cutoff, pruneBatch)
		if err != nil {
			return st, fmt.Errorf("prune deliveries: %w", err)
		}
		st.Deliveries += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			break
		}
	}
	for {
		tag, err := r.pool.Exec(ctx, `DELETE FROM relay.outbox WHERE ("transaction_id", "offset") IN (
			SELECT o."transaction_id", o."offset"
			  FROM relay.outbox o, relay.outbox_offsets g
			 WHERE g.consumer_group = $3
			   AND o.created_at < $1
			   AND (o."transaction_id", o."offset") <= (g.last_processed_transaction_id, g.offset_acked)
			   AND NOT EXISTS (SELECT 1 FROM relay.deliveries d WHERE d.event_id = o."uuid"::uuid)
			 LIMIT $2)`, cutoff, pruneBatch, consumerGroup)
		if err != nil {
			return st, fmt.Errorf("prune events: %w", err)
		}
		st.Events += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			break
		}
	}
	// The Stripe ids are what makes a Stripe resend a no-op; Stripe resends for up to
	// three days, so they are kept at least that long whatever the retention.
	stripeCutoff := time.Now().Add(-max(r.cfg.Retention, stripeResendWindow))
	for {
		tag, err := r.pool.Exec(ctx, `DELETE FROM relay.stripe_events WHERE id IN (
			SELECT id FROM relay.stripe_events WHERE received_at < $1 LIMIT $2)`, stripeCutoff, pruneBatch)
		if err != nil {
			return st, fmt.Errorf("prune stripe events: %w", err)
		}
		st.StripeEvents += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			break
		}
	}
	if st.Deliveries > 0 || st.Events > 0 || st.StripeEvents > 0 {
		r.log.Info().Int64("deliveries", st.Deliveries).Int64("events", st.Events).Int64("stripe_events", st.StripeEvents).
			Dur("retention", r.cfg.Retention).Msg("pruned history past retention")
	}
	return st, nil
}
