package store_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// claimedDeliveries makes n due deliveries of n post.published events to one webhook and
// claims them for owner.
func claimedDeliveries(t *testing.T, db *testutil.DB, owner string, n int) []store.Claimed {
	t.Helper()
	ctx := context.Background()
	execAll(t, db, oneWebhookSQL)
	if _, err := db.Pool.Exec(ctx, `SELECT relay.emit('post.published', '{}') FROM generate_series(1, $1)`, n); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, next_attempt_at)
		SELECT o."uuid"::uuid, w.id, now() - interval '1 second' FROM relay.outbox o, relay.webhooks w`); err != nil {
		t.Fatal(err)
	}
	got, err := store.Claim(ctx, db.Pool, store.ClaimRequest{Owner: owner, Limit: n, DefaultRoom: n, Lease: time.Minute})
	if err != nil || len(got) != n {
		t.Fatalf("claim: %d, %v; want %d", len(got), err, n)
	}
	return got
}

// oneWebhookSQL creates one active webhook for post.published, older than any event.
const oneWebhookSQL = `INSERT INTO relay.webhooks (event, target_url, created_at) VALUES ('post.published', 'http://127.0.0.1:1/', now() - interval '1 hour')`

// dueDeliveriesSQL inserts n pending deliveries, due now, to every webhook.
func dueDeliveriesSQL(n int) string {
	return fmt.Sprintf(`INSERT INTO relay.deliveries (event_id, webhook_id, next_attempt_at)
		 SELECT gen_random_uuid(), w.id, now() - interval '1 second' FROM relay.webhooks w, generate_series(1, %d)`, n)
}

func execAll(t *testing.T, db *testutil.DB, statements ...string) {
	t.Helper()
	for _, sql := range statements {
		if _, err := db.Pool.Exec(context.Background(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
}
