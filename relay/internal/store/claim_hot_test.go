package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

// TestClaimLeasesAreHOTUpdates: a claim changes no indexed column of relay.deliveries,
// so when the page its rows are on has room (the table's fillfactor, schema 00014) the
// leases are written in place, without new entries in the table's indexes. With rows
// packed four fifths full (fillfactor 80), a claim of 100 neighbouring rows wrote 78 of
// them as new versions elsewhere, each with four index entries.
func TestClaimLeasesAreHOTUpdates(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	for _, sql := range []string{
		`INSERT INTO relay.webhooks (event, target_url, created_at) VALUES ('post.published', 'http://127.0.0.1:1/', now() - interval '1 hour')`,
		// Rows as a fan-out writes them: one after another, due now.
		`INSERT INTO relay.deliveries (event_id, webhook_id, next_attempt_at)
		 SELECT gen_random_uuid(), w.id, now() - interval '1 second' FROM relay.webhooks w, generate_series(1, 400)`,
	} {
		if _, err := db.Pool.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var updated, hot int64
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := store.Claim(ctx, tx, store.ClaimRequest{Owner: "me", Limit: 100, DefaultRoom: 100, Lease: time.Minute}); err != nil {
			return err
		}
		// This transaction's own counts, before they reach the shared statistics.
		return tx.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables
		                          WHERE relid = 'relay.deliveries'::regclass`).Scan(&updated, &hot)
	})
	if err != nil {
		t.Fatal(err)
	}
	if updated != 100 {
		t.Fatalf("the claim updated %d deliveries, want 100", updated)
	}
	if hot < updated*9/10 {
		t.Errorf("%d of the claim's %d updates were HOT, want at least 90%%", hot, updated)
	}
}
