package schema_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/schema"
	"github.com/relayhq/relay/testutil"
)

// Upgrading to event sources keeps what worked: a CMS role granted the first form of
// relay.emit can emit with an untyped literal (now the text form), Stripe's events keep
// their source and Ghost's stripe.* webhooks keep getting Stripe's signature.
func TestUpgradeToEventSourcesKeepsCMSRolesStripeEventsAndGhostsWebhook(t *testing.T) {
	t.Parallel()
	db := testutil.NewEmptyDB(t)
	ctx := context.Background()
	if _, err := schema.UpTo(ctx, db.URL, 3); err != nil {
		t.Fatal(err)
	}
	role := pgx.Identifier{"cms_" + db.Name}.Sanitize()
	for _, q := range []string{
		"CREATE ROLE " + role,
		"GRANT USAGE ON SCHEMA relay TO " + role,
		"GRANT EXECUTE ON FUNCTION relay.emit(text, jsonb) TO " + role,
		`INSERT INTO relay.stripe_events (id, type, livemode, raw, event_id)
		 VALUES ('evt_1', 'charge.refunded', false, '{"id":"evt_1"}', relay.emit_raw('stripe.charge.refunded', '{"id":"evt_1"}'))`,
		`INSERT INTO relay.webhooks (event, target_url) VALUES ('stripe.*', 'https://ghost.example/members/webhooks/stripe/')`,
		`INSERT INTO relay.webhooks (event, target_url) VALUES ('*', 'https://third.example/')`,
	} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), "DROP OWNED BY "+role)
		_, _ = db.Pool.Exec(context.Background(), "DROP ROLE "+role)
	})
	if err := schema.Migrate(ctx, db.URL); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+role); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `SELECT relay.emit('post.added', '{"b":1,"a":2}')`)
		return err
	})
	if err != nil {
		t.Errorf("the CMS role cannot emit after the upgrade: %v", err)
	}
	var source string
	if err := db.Pool.QueryRow(ctx, `SELECT e.source FROM relay.events e JOIN relay.stripe_events s ON s.event_id = e.id`).Scan(&source); err != nil || source != "stripe" {
		t.Errorf("source of the Stripe event = %q (%v), want stripe", source, err)
	}
	var ghost, star bool
	if err := db.Pool.QueryRow(ctx, `SELECT bool_or(stripe_signature) FILTER (WHERE event = 'stripe.*'),
		bool_or(stripe_signature) FILTER (WHERE event = '*') FROM relay.webhooks`).Scan(&ghost, &star); err != nil {
		t.Fatal(err)
	}
	if !ghost || star {
		t.Errorf("stripe_signature after upgrade: stripe.* %v, * %v; want true, false", ghost, star)
	}
}
