package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/invalid"
)

// Selection says which deliveries to redeliver; set exactly one of DeliveryID, EventID
// or WebhookID.
type Selection struct {
	// DeliveryID redelivers one delivery.
	DeliveryID int64
	// EventID redelivers every delivery of one event.
	EventID string
	// WebhookID redelivers the deliveries of one webhook created at or after Since
	// (required) that are in Status (default "failed").
	WebhookID string
	Since     time.Time
	Status    string
	// IntegrationID, when set, narrows a delivery or event selection to the deliveries
	// of that integration's webhooks (an Admin API key acts on its own webhooks only).
	IntegrationID string
	// StripeSignature lets the redelivered attempts of Stripe's events carry a fresh
	// Stripe-Signature (to the webhooks marked for it). Off by default: re-sending a
	// payment event to Ghost, which does not deduplicate, must be asked for explicitly.
	StripeSignature bool
}

// Result tells what a redelivery did, delivery by delivery.
type Result struct {
	// Redelivered are now pending and due at once.
	Redelivered []int64 `json:"redelivered"`
	// InFlight had an attempt under way; it was left alone, since starting a second
	// attempt beside it would break "at most one attempt in flight".
	InFlight []int64 `json:"skipped_in_flight"`
	// WebhookInactive belong to a disabled or deleted webhook, which the relay does not
	// deliver to; re-enable the webhook first (and for a deleted one, there is no target).
	WebhookInactive []int64 `json:"skipped_webhook_inactive"`
}

var (
	// ErrInFlight is returned when the one delivery asked for has an attempt under way.
	ErrInFlight = errors.New("an attempt of this delivery is in flight; try again when it has finished")
	// ErrWebhookInactive is returned when the one delivery asked for belongs to a
	// disabled or deleted webhook.
	ErrWebhookInactive = errors.New("the delivery's webhook is disabled or deleted; enable it first")
)

// redeliverBatch bounds each statement so that redelivering a large backlog is many
// short transactions, never one that holds thousands of row locks.
const redeliverBatch = 500

// redeliverSQL locks a batch of the selected deliveries and puts those that may go
// back in the queue: pending, due now, no lease. The attempts and their numbering are
// untouched, so the next attempt is appended as attempt n+1; delivered_at and the
// last_* columns keep telling the past until that attempt is recorded. The in-flight
// test runs on the locked row, so it cannot race with a relay claiming it.
const redeliverSQL = `
WITH cand AS (
    SELECT d.id, d.webhook_id, d.ordering_key, d.event_tx, d.event_offset,
           coalesce(w.status = 'active', false) AS webhook_ok,
           coalesce(w.ordered, false) AND d.ordering_key IS NOT NULL AS keyed,
           (d.status = 'pending' AND d.lease_token IS NOT NULL AND d.lease_expires_at > now()) AS in_flight
      FROM relay.deliveries d
      LEFT JOIN relay.webhooks w ON w.id = d.webhook_id
     WHERE %s AND d.id > $1
     ORDER BY d.id
     LIMIT $2
       FOR UPDATE OF d
), go AS (
    -- A delivery of an ordered key waits its turn (held) when another one of its key is
    -- under way, or comes before it among those redelivered now.
    SELECT c.id,
           c.keyed AND (
               row_number() OVER (PARTITION BY c.keyed, c.webhook_id, c.ordering_key ORDER BY c.event_tx, c.event_offset) > 1
               OR EXISTS (SELECT 1 FROM relay.deliveries a
                           WHERE a.webhook_id = c.webhook_id AND a.ordering_key = c.ordering_key AND a.id <> c.id
                             AND (a.status = 'failed' OR (a.status = 'pending' AND a.next_attempt_at IS NOT NULL))
                             AND a.id NOT IN (SELECT id FROM cand))) AS held
      FROM cand c
     WHERE c.webhook_ok AND NOT c.in_flight
), upd AS (
    UPDATE relay.deliveries d
       SET status = 'pending', next_attempt_at = CASE WHEN g.held THEN NULL ELSE now() END, sign_stripe = $3,
           lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
      FROM go g
     WHERE d.id = g.id
    RETURNING d.id
)
SELECT c.id, c.webhook_ok, c.in_flight FROM cand c ORDER BY c.id`

// ErrNotFound is returned when what Redeliver was asked to act on does not exist.
var ErrNotFound = errors.New("not found")

// Redeliver puts the selected deliveries back in the queue, due now, and wakes every
// running relay (NOTIFY relay_deliveries) so that they are attempted at once. It works
// on any status: a failed or cancelled delivery is tried again, a pending one waiting
// for its next retry is tried now, and a succeeded one is sent once more (an explicit
// operator action; receivers see the same webhook-id and can deduplicate).
//
// A delivery of an ordered webhook's key waits its turn: it goes at once only when no
// other delivery of its key is under way, else after it (and before the key's later
// deliveries that are held).
//
// A redelivered delivery continues its retry schedule from its attempt count: one
// whose schedule was exhausted gets exactly one attempt, and is failed again if that
// fails.
//
// For a single delivery, ErrNotFound, ErrInFlight or ErrWebhookInactive say why
// nothing happened; for an event or a webhook, the Result lists what was skipped.
func Redeliver(ctx context.Context, pool Beginner, sel Selection) (Result, error) {
	res := Result{Redelivered: []int64{}, InFlight: []int64{}, WebhookInactive: []int64{}}
	var cond string
	var arg any
	switch {
	case sel.DeliveryID != 0 && sel.EventID == "" && sel.WebhookID == "":
		cond, arg = "d.id = $4", sel.DeliveryID
	case sel.EventID != "" && sel.DeliveryID == 0 && sel.WebhookID == "":
		id, err := uuid.Parse(sel.EventID)
		if err != nil {
			return res, invalid.New("event", "event id must be a UUID, got %q", clip(sel.EventID))
		}
		cond, arg = "d.event_id = $4::uuid", id.String()
	case sel.WebhookID != "" && sel.DeliveryID == 0 && sel.EventID == "":
		if sel.Since.IsZero() {
			return res, invalid.New("since", "redelivering a webhook's deliveries needs a since time")
		}
		status := sel.Status
		if status == "" {
			status = "failed"
		}
		if _, ok := ParseStatus(status); !ok {
			return res, invalid.New("status", "status must be one of %s, got %q", StatusNames(), status)
		}
		// Status is checked above, so a literal is safe here; unlike a parameter it lets
		// the planner use the partial index of failed deliveries.
		cond = "d.webhook_id = $4 AND d.created_at >= $5 AND d.status = '" + status + "'"
		return redeliver(ctx, pool, res, cond, sel.StripeSignature, sel.WebhookID, sel.Since)
	default:
		return res, invalid.New("selection", "choose exactly one of a delivery id, an event id, or a webhook id with a since time")
	}
	args := []any{arg}
	if sel.IntegrationID != "" {
		cond += " AND d.webhook_id IN (SELECT o.id FROM relay.webhooks o WHERE o.integration_id = $5)"
		args = append(args, sel.IntegrationID)
	}
	res, err := redeliver(ctx, pool, res, cond, sel.StripeSignature, args...)
	if err != nil {
		return res, err
	}
	if sel.DeliveryID != 0 {
		switch {
		case len(res.InFlight) > 0:
			return res, ErrInFlight
		case len(res.WebhookInactive) > 0:
			return res, ErrWebhookInactive
		case len(res.Redelivered) == 0:
			return res, ErrNotFound
		}
	}
	if sel.EventID != "" && len(res.Redelivered)+len(res.InFlight)+len(res.WebhookInactive) == 0 {
		var exists bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM relay.outbox WHERE "uuid"::uuid = $1::uuid)`, arg).Scan(&exists); err != nil {
			return res, fmt.Errorf("redeliver: look up event: %w", err)
		}
		if !exists {
			return res, ErrNotFound
		}
	}
	return res, nil
}

func redeliver(ctx context.Context, pool Beginner, res Result, cond string, signStripe bool, args ...any) (Result, error) {
	q := fmt.Sprintf(redeliverSQL, cond)
	var last int64
	for {
		// One batch, kept apart until its transaction commits.
		var batch Result
		n := 0
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			batch, n = Result{}, 0
			rows, err := tx.Query(ctx, q, append([]any{last, redeliverBatch, signStripe}, args...)...)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id int64
				var ok, inFlight bool
				if err := rows.Scan(&id, &ok, &inFlight); err != nil {
					return err
				}
				n++
				switch {
				case !ok:
					batch.WebhookInactive = append(batch.WebhookInactive, id)
				case inFlight:
					batch.InFlight = append(batch.InFlight, id)
				default:
					batch.Redelivered = append(batch.Redelivered, id)
				}
				last = id
			}
			if err := rows.Err(); err != nil {
				return err
			}
			rows.Close()
			if len(batch.Redelivered) > 0 {
				// Delivered at commit: running relays claim at once instead of at their
				// next poll.
				if _, err := tx.Exec(ctx, `SELECT pg_notify('relay_deliveries', '')`); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("redeliver: %w", err)
		}
		res.Redelivered = append(res.Redelivered, batch.Redelivered...)
		res.InFlight = append(res.InFlight, batch.InFlight...)
		res.WebhookInactive = append(res.WebhookInactive, batch.WebhookInactive...)
		if n < redeliverBatch {
			return res, nil
		}
	}
}
