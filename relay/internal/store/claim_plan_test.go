package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

// TestClaimLeasesByPrimaryKeyOnStaleStatistics: a drain's deliveries table grows from
// empty (as analyzed) to a large backlog faster than autovacuum analyzes it. The claim's
// update must still find the rows it leases by primary key. Joined with the webhooks and
// the events inside the update, plans made on such statistics reached them through
// another index: here the (event, webhook) key from the outbox's side; in a drain of
// 100,000 events the webhook's whole index, intersected with the ids (a claim of 50 took
// 9 ms instead of 2, and the drain ran at 2,000 deliveries/s instead of 2,800).
func TestClaimLeasesByPrimaryKeyOnStaleStatistics(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	execAll(t, db,
		`ALTER TABLE relay.deliveries SET (autovacuum_enabled = false)`,
		oneWebhookSQL,
		`ANALYZE`, // the webhook; no delivery yet, as when a drain starts
		dueDeliveriesSQL(50000),
	)
	// The relay plans the claim for each execution's values (its claim pool).
	var plan []string
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL plan_cache_mode = force_custom_plan`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "EXPLAIN "+store.ClaimSQL, "me", 100, 50, "1 minute", []string{}, []int32{})
		if err != nil {
			return err
		}
		plan, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if strings.Contains(text, "deliveries_webhook_idx") || strings.Contains(text, "BitmapAnd") {
		t.Errorf("the claim reads the webhook's whole delivery index:\n%s", text)
	}
	if !strings.Contains(text, "deliveries_pkey") {
		t.Errorf("the claim's update does not find its rows by primary key:\n%s", text)
	}
}

// TestClaimLeasesAreHOTUpdates: a claim changes no indexed column of relay.deliveries,
// so when the page its rows are on has room (the table's fillfactor, schema 00014) the
// leases are written in place, without new entries in the table's indexes. With rows
// packed four fifths full (fillfactor 80), a claim of 100 neighbouring rows wrote 78 of
// them as new versions elsewhere, each with four index entries.
func TestClaimLeasesAreHOTUpdates(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	execAll(t, db, oneWebhookSQL, dueDeliveriesSQL(400)) // one after another, as a fan-out writes them
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
