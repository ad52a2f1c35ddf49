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

// backlogSQL compares each outbox row's (transaction_id, "offset") with the consumer
// group's position, which is how watermill-sql itself decides what is next. Before the
// first relay ever ran the group has no row, and everything is unread. Both the count
// and the age come from one index range scan of the outbox's primary key.
const backlogSQL = `
WITH g AS (
    SELECT last_processed_transaction_id AS tx, coalesce(offset_acked, 0) AS off
      FROM relay.outbox_offsets WHERE consumer_group = $1
    UNION ALL
    SELECT '0'::xid8, 0
     WHERE NOT EXISTS (SELECT 1 FROM relay.outbox_offsets WHERE consumer_group = $1)
), unread AS (
    SELECT count(*) AS n, min(o.created_at) AS oldest
      FROM relay.outbox o, g
     WHERE (o.transaction_id, o."offset") > (g.tx, g.off)
)
SELECT unread.n,
       coalesce(extract(epoch FROM greatest(now() - unread.oldest, interval '0')), 0)::float8,
       (SELECT count(*) FROM relay.deliveries WHERE status = 'pending'),
       (SELECT count(*) FROM relay.deliveries WHERE status = 'failed')
  FROM unread`

// ReadSummary runs one short statement on q (a pool, or a page's read transaction);
// callers bound it with ctx.
func ReadSummary(ctx context.Context, q store.Querier) (Summary, error) {
	var s Summary
	var age float64
	if err := q.QueryRow(ctx, backlogSQL, store.ConsumerGroup).Scan(&s.Backlog, &age, &s.Pending, &s.Failed); err != nil {
		return Summary{}, fmt.Errorf("status: read backlog and delivery counts: %w", err)
	}
	s.OldestUnread = time.Duration(age * float64(time.Second))
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
	// LastTriggeredAt, LastStatus and LastError describe the most recent recorded
	// attempt; LastError is nil when that attempt succeeded.
	LastTriggeredAt *time.Time `json:"last_triggered_at"`
	LastStatus      *string    `json:"last_status"`
	LastError       *string    `json:"last_error"`
	LastSuccessAt   *time.Time `json:"last_success_at"`
	// FailingSince is when the current run of failures began; nil while healthy.
	FailingSince *time.Time `json:"failing_since"`
}

// webhooksSQL counts only pending and failed rows, through the (status, created_at)
// index, so its cost follows the trouble, not the history.
const webhooksSQL = `
SELECT w.id, w.event, w.target_url, w.status, w.disabled_reason,
       coalesce(d.pending, 0), coalesce(d.failed, 0),
       w.last_triggered_at, w.last_triggered_status, w.last_attempt_error,
       w.last_success_at, w.failing_since
  FROM relay.webhooks w
  LEFT JOIN (
        SELECT webhook_id,
               count(*) FILTER (WHERE status = 'pending') AS pending,
               count(*) FILTER (WHERE status = 'failed') AS failed
          FROM relay.deliveries
         WHERE status IN ('pending', 'failed')
         GROUP BY webhook_id
  ) d ON d.webhook_id = w.id
 ORDER BY w.created_at, w.id`

// ReadWebhooks lists every webhook with its pending and failed deliveries, oldest
// webhook first.
func ReadWebhooks(ctx context.Context, pool *pgxpool.Pool) ([]Webhook, error) {
	rows, err := pool.Query(ctx, webhooksSQL)
	if err != nil {
		return nil, fmt.Errorf("status: read webhooks: %w", err)
	}
	ws, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Webhook, error) {
		var w Webhook
		err := row.Scan(&w.ID, &w.Event, &w.TargetURL, &w.Status, &w.DisabledReason,
			&w.Pending, &w.Failed, &w.LastTriggeredAt, &w.LastStatus, &w.LastError,
			&w.LastSuccessAt, &w.FailingSince)
		w.TargetURL = webhook.MaskURL(w.TargetURL)
		return w, err
	})
	if err != nil {
		return nil, fmt.Errorf("status: read webhooks: %w", err)
	}
	return ws, nil
}
