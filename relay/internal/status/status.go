// Package status reads the relay's state from the database: the outbox backlog, the
// deliveries still pending or failed, and each webhook's health. The Prometheus
// collector (package metrics) and `relay status` both read it here, so a gauge and
// the command line never disagree about what "pending" or "backlog" means.
//
// Every figure is database-wide: all relays on one database see the same numbers.
package status

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/internal/webhook"
)

// Summary is the database-wide state at one instant.
type Summary struct {
	// Backlog counts committed events the relays have not yet read (fanned out).
	Backlog int64 `json:"outbox_backlog"`
	// OldestUnread is the age of the oldest unread event (from its created_at, the
	// start of the transaction that emitted it); zero when the backlog is empty.
	OldestUnread time.Duration `json:"-"`
	// Pending deliveries are due now or waiting for a retry.
	Pending int64 `json:"pending"`
	// Failed deliveries exhausted their retries (or got a 410); they stay until
	// redelivered by hand or pruned by retention.
	Failed int64 `json:"failed"`
}

// positionSQL is the consumer group's position in the outbox, (0, 0) before the first
// relay ever ran.
const positionSQL = `SELECT coalesce((SELECT last_processed_transaction_id::text FROM relay.outbox_offsets WHERE consumer_group = $1), '0'),
	coalesce((SELECT offset_acked FROM relay.outbox_offsets WHERE consumer_group = $1), 0)`

// backlogSQL counts the outbox rows after a position, as watermill-sql itself decides
// what is next: (transaction_id, "offset") greater than the group's. The position comes
// as parameters read just before, not from a join, so that the planner sees where it
// is and reads only the rows after it through the primary key (joined, it guessed a
// third of the outbox and scanned all of it).
const backlogSQL = `SELECT count(*), coalesce(extract(epoch FROM greatest(now() - min(created_at), interval '0')), 0)::float8
	FROM relay.outbox WHERE (transaction_id, "offset") > ($1::text::xid8, $2::bigint)`

// countsSQL counts pending and failed deliveries through their partial indexes.
const countsSQL = `SELECT (SELECT count(*) FROM relay.deliveries WHERE status = 'pending'),
	(SELECT count(*) FROM relay.deliveries WHERE status = 'failed')`

// ReadBacklog returns the committed events the relays have not read yet and how old the
// oldest of them is, in two short statements on q.
func ReadBacklog(ctx context.Context, q store.Querier) (events int64, oldest time.Duration, err error) {
	var tx string
	var off int64
	if err := q.QueryRow(ctx, positionSQL, store.ConsumerGroup).Scan(&tx, &off); err != nil {
		return 0, 0, fmt.Errorf("status: read the outbox position: %w", err)
	}
	var age float64
	if err := q.QueryRow(ctx, backlogSQL, tx, off).Scan(&events, &age); err != nil {
		return 0, 0, fmt.Errorf("status: read the outbox backlog: %w", err)
	}
	return events, time.Duration(age * float64(time.Second)), nil
}

// ReadSummary reads the backlog and the delivery counts on q (a pool, or a page's read
// transaction) in three short statements; callers bound them with ctx.
func ReadSummary(ctx context.Context, q store.Querier) (Summary, error) {
	var s Summary
	var err error
	if s.Backlog, s.OldestUnread, err = ReadBacklog(ctx, q); err != nil {
		return Summary{}, err
	}
	if err := q.QueryRow(ctx, countsSQL).Scan(&s.Pending, &s.Failed); err != nil {
		return Summary{}, fmt.Errorf("status: read delivery counts: %w", err)
	}
	return s, nil
}

// Webhook is one webhook's health.
type Webhook struct {
	ID             string  `json:"id"`
	Event          string  `json:"event"`
	TargetURL      string  `json:"target_url"`
	Status         string  `json:"status"`
	DisabledReason *string `json:"disabled_reason"`
	Pending        int64   `json:"pending"`
	Failed         int64   `json:"failed"`
	// Ordered webhooks deliver each key's events one at a time. Held counts their
	// pending deliveries that wait for an earlier one of their key; BlockedKeys the keys
	// whose earliest unfinished delivery failed, which hold until it is redelivered or
	// skipped (relay deliveries skip).
	Ordered     bool  `json:"ordered"`
	Held        int64 `json:"held"`
	BlockedKeys int64 `json:"blocked_keys"`
	// LastTriggeredAt, LastStatus and LastError describe the most recent recorded
	// attempt; LastError is nil when that attempt succeeded.
	LastTriggeredAt *time.Time `json:"last_triggered_at"`
	LastStatus      *string    `json:"last_status"`
	LastError       *string    `json:"last_error"`
	LastSuccessAt   *time.Time `json:"last_success_at"`
	// FailingSince is when the current run of failures began; nil while healthy.
	FailingSince *time.Time `json:"failing_since"`
}

// webhookCountsSQL counts each webhook's unfinished deliveries (WebhookCounts), of
// every webhook or, with one, of the webhook $1. It reads only pending and failed rows,
// each through its partial index (as one scan of both statuses the planner read every
// delivery), so its cost follows the trouble, not the history. Held and blocked keys are
// the ordering rules of 00011_ordering: a held delivery is pending with no next attempt,
// and a key is blocked by its failed delivery.
func webhookCountsSQL(one bool) string {
	filter := ""
	if one {
		filter = " AND webhook_id = $1"
	}
	return `SELECT webhook_id, sum(pending)::bigint AS pending, sum(failed)::bigint AS failed,
               sum(held)::bigint AS held, sum(blocked_keys)::bigint AS blocked_keys FROM (
            SELECT webhook_id, count(*) AS pending, 0 AS failed,
                   count(*) FILTER (WHERE next_attempt_at IS NULL) AS held, 0 AS blocked_keys
              FROM relay.deliveries WHERE status = 'pending'` + filter + ` GROUP BY webhook_id
            UNION ALL
            SELECT webhook_id, 0, count(*), 0, count(DISTINCT ordering_key)
              FROM relay.deliveries WHERE status = 'failed'` + filter + ` GROUP BY webhook_id
        ) c GROUP BY webhook_id`
}

// WebhookCounts are one webhook's unfinished deliveries.
type WebhookCounts struct {
	// Pending deliveries are due, waiting for a retry, or held.
	Pending int64
	// Failed deliveries exhausted their retries.
	Failed int64
	// Held are the pending deliveries of an ordered webhook waiting for an earlier one
	// of their key.
	Held int64
	// BlockedKeys are the ordering keys with a failed delivery, which holds the key's
	// later ones until it is redelivered or skipped.
	BlockedKeys int64
}

// ReadWebhookCounts counts the unfinished deliveries of every webhook (deleted ones'
// included), or of webhookID only, by webhook id, on q (a pool, or a page's read
// transaction). A webhook without any is not in the map.
func ReadWebhookCounts(ctx context.Context, q store.Querier, webhookID string) (map[string]WebhookCounts, error) {
	var args []any
	if webhookID != "" {
		args = append(args, webhookID)
	}
	rows, err := q.Query(ctx, webhookCountsSQL(webhookID != ""), args...)
	if err != nil {
		return nil, fmt.Errorf("status: count deliveries by webhook: %w", err)
	}
	defer rows.Close()
	out := map[string]WebhookCounts{}
	for rows.Next() {
		var id string
		var c WebhookCounts
		if err := rows.Scan(&id, &c.Pending, &c.Failed, &c.Held, &c.BlockedKeys); err != nil {
			return nil, fmt.Errorf("status: count deliveries by webhook: %w", err)
		}
		out[id] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("status: count deliveries by webhook: %w", err)
	}
	return out, nil
}

// webhooksSQL is every webhook with its counts, in one statement.
func webhooksSQL() string {
	return `
SELECT w.id, w.event, w.target_url, w.status, w.disabled_reason,
       coalesce(d.pending, 0)::bigint, coalesce(d.failed, 0)::bigint,
       w.ordered, coalesce(d.held, 0)::bigint, coalesce(d.blocked_keys, 0)::bigint,
       w.last_triggered_at, w.last_triggered_status, w.last_attempt_error,
       w.last_success_at, w.failing_since
  FROM relay.webhooks w
  LEFT JOIN (` + webhookCountsSQL(false) + `) d ON d.webhook_id = w.id
 ORDER BY w.created_at, w.id`
}

// ReadWebhooks lists every webhook with its pending and failed deliveries, oldest
// webhook first.
func ReadWebhooks(ctx context.Context, pool *pgxpool.Pool) ([]Webhook, error) {
	rows, err := pool.Query(ctx, webhooksSQL())
	if err != nil {
		return nil, fmt.Errorf("status: read webhooks: %w", err)
	}
	ws, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Webhook, error) {
		var w Webhook
		err := row.Scan(&w.ID, &w.Event, &w.TargetURL, &w.Status, &w.DisabledReason,
			&w.Pending, &w.Failed, &w.Ordered, &w.Held, &w.BlockedKeys, &w.LastTriggeredAt, &w.LastStatus, &w.LastError,
			&w.LastSuccessAt, &w.FailingSince)
		w.TargetURL = webhook.MaskURL(w.TargetURL)
		return w, err
	})
	if err != nil {
		return nil, fmt.Errorf("status: read webhooks: %w", err)
	}
	return ws, nil
}
