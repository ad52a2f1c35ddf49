package store

import (
	"context"
	"fmt"
	"time"
)

// DisableWebhook disables an active webhook for reason and cancels its pending
// deliveries but except (0: none), in one statement (relay.disable_webhook, the rule the
// Admin API, the CLI and maintenance share). disabled says whether this call did it,
// so that concurrent 410s, or several relays, log and count the change once.
func DisableWebhook(ctx context.Context, q Querier, webhookID, reason string, except int64) (disabled bool, cancelled int64, err error) {
	var ex *int64
	if except != 0 {
		ex = &except
	}
	if err := q.QueryRow(ctx, `SELECT disabled, cancelled FROM relay.disable_webhook($1, $2, $3)`, webhookID, reason, ex).
		Scan(&disabled, &cancelled); err != nil {
		return false, 0, fmt.Errorf("disable webhook %s: %w", webhookID, err)
	}
	return disabled, cancelled, nil
}

// Disabled is a webhook DisableFailing turned off.
type Disabled struct {
	WebhookID string
	Reason    string
	Cancelled int64
}

// disableFailingSQL disables, one by one through relay.disable_webhook, every active
// webhook that has been failing (no 2xx) for longer than $1.
const disableFailingSQL = `
SELECT w.id, r.reason, d.cancelled
  FROM relay.webhooks w
 CROSS JOIN LATERAL (SELECT format('no successful delivery since %s (failing for longer than %s)',
                                   to_char(w.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), $2::text) AS reason) r
 CROSS JOIN LATERAL relay.disable_webhook(w.id, r.reason, NULL) d
 WHERE w.status = 'active' AND w.failing_since < now() - $1::interval AND d.disabled`

// DisableFailing disables every webhook that has failed without a single 2xx for
// longer than after, cancelling their pending deliveries.
func DisableFailing(ctx context.Context, q Querier, after time.Duration) ([]Disabled, error) {
	rows, err := q.Query(ctx, disableFailingSQL, after, after.String())
	if err != nil {
		return nil, fmt.Errorf("disable failing webhooks: %w", err)
	}
	defer rows.Close()
	var out []Disabled
	for rows.Next() {
		var d Disabled
		if err := rows.Scan(&d.WebhookID, &d.Reason, &d.Cancelled); err != nil {
			return nil, fmt.Errorf("disable failing webhooks: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("disable failing webhooks: %w", err)
	}
	return out, nil
}
