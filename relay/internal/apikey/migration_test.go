package apikey_test

import (
	"context"
	"testing"

	"github.com/relayhq/relay/relay/internal/apikey"
	"github.com/relayhq/relay/schema"
	"github.com/relayhq/relay/testutil"
)

// TestKeysAndTheirWebhooksSurviveTheIntegrationsMigration: a database with keys and
// Admin API webhooks from before integrations (00005) comes out with one integration
// per key, each key's webhooks belonging to it, and the CLI's and body-chosen ones the
// operator's.
func TestKeysAndTheirWebhooksSurviveTheIntegrationsMigration(t *testing.T) {
	t.Parallel()
	db := testutil.NewEmptyDB(t)
	ctx := context.Background()
	if _, err := schema.UpTo(ctx, db.URL, 3); err != nil {
		t.Fatal(err)
	}
	const keyA, keyB = "aaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbbbb"
	if _, err := db.Pool.Exec(ctx, `INSERT INTO relay.api_keys (id, name, secret_plain, revoked_at) VALUES
		($1, 'Zapier', repeat('a', 64), NULL), ($2, 'Zapier', repeat('b', 64), now()), ('cccccccccccccccccccccccc', '', repeat('c', 64), NULL)`, keyA, keyB); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO relay.webhooks (id, event, target_url, integration_id) VALUES
		('000000000000000000000001', 'post.added', 'https://example.com/a', $1),
		('000000000000000000000002', 'post.added', 'https://example.com/b', $2),
		('000000000000000000000003', 'post.added', 'https://example.com/c', 'from-a-request-body'),
		('000000000000000000000004', 'post.added', 'https://example.com/d', NULL)`, keyA, keyB); err != nil {
		t.Fatal(err)
	}
	if _, err := schema.Up(ctx, db.URL); err != nil {
		t.Fatal(err)
	}
	integrationOf := map[string][2]string{} // key -> integration id, name
	slugs := map[string]bool{}
	rows, err := db.Pool.Query(ctx, `SELECT k.id, i.id, i.name, i.slug, i.type FROM relay.api_keys k JOIN relay.integrations i ON i.id = k.integration_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, id, name, slug, typ string
		if err := rows.Scan(&k, &id, &name, &slug, &typ); err != nil {
			t.Fatal(err)
		}
		integrationOf[k] = [2]string{id, name}
		if slugs[slug] || typ != "custom" {
			t.Errorf("integration %s: slug %q (seen before: %v), type %q", id, slug, slugs[slug], typ)
		}
		slugs[slug] = true
	}
	if len(integrationOf) != 3 || integrationOf[keyA][0] == integrationOf[keyB][0] ||
		integrationOf[keyA][1] != "Zapier" || integrationOf["cccccccccccccccccccccccc"][1] != "Custom integration" {
		t.Fatalf("integrations: %v", integrationOf)
	}
	// The key still verifies tokens, now as its integration.
	keys, _ := apikey.NewStore(db.Pool, nil)
	if active, err := keys.Lookup(ctx, keyA); err != nil || active.IntegrationID != integrationOf[keyA][0] || len(active.Secret) != 32 {
		t.Errorf("key after the migration: %+v %v", active, err)
	}
	for id, want := range map[string]string{ // "" is NULL
		"000000000000000000000001": integrationOf[keyA][0],
		"000000000000000000000002": integrationOf[keyB][0],
		"000000000000000000000003": "", "000000000000000000000004": "",
	} {
		var got string
		if err := db.Pool.QueryRow(ctx, `SELECT coalesce(integration_id, '') FROM relay.webhooks WHERE id = $1`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("webhook %s: integration_id %q, want %q", id, got, want)
		}
	}
}
