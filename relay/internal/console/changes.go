package console

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/store"
)

// target is what a change was made to (zero fields: nothing in particular, as for a
// sign-in).
type target struct {
	WebhookID  string
	DeliveryID int64
	EventID    string
}

// recordChange writes who did what to relay.console_changes, in q (the change's own
// transaction, so that no change is made without its record).
func recordChange(ctx context.Context, q store.Querier, s *session, action string, t target, detail string) error {
	_, err := q.Exec(ctx, `INSERT INTO relay.console_changes (key_id, key_name, action, webhook_id, delivery_id, event_id, detail)
		VALUES ($1, $2, $3, nullif($4, ''), nullif($5, 0::bigint), nullif($6, '')::uuid, $7)`,
		s.KeyID, s.KeyName, action, t.WebhookID, t.DeliveryID, t.EventID, detail)
	if err != nil {
		return fmt.Errorf("record console change %q: %w", action, err)
	}
	return nil
}

// change is one recorded change, as a webhook's page shows it.
type change struct {
	At         time.Time
	KeyID      string
	KeyName    string
	Action     string
	DeliveryID *int64
	EventID    *string
	Detail     string
}

// webhookChanges returns the changes made to a webhook in the console, newest first.
func webhookChanges(ctx context.Context, q store.Querier, webhookID string, limit int) ([]change, error) {
	rows, err := q.Query(ctx, `SELECT at, key_id, key_name, action, delivery_id, event_id::text, detail
		FROM relay.console_changes WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2`, webhookID, limit)
	if err != nil {
		return nil, fmt.Errorf("read console changes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (change, error) {
		var c change
		err := r.Scan(&c.At, &c.KeyID, &c.KeyName, &c.Action, &c.DeliveryID, &c.EventID, &c.Detail)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("read console changes: %w", err)
	}
	return out, nil
}
