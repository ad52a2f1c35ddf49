package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

// TestReleaseHandsBackLeasesAndAnnouncesThem: Release hands back the given leases (only
// with their tokens) or all of an owner's, counts them, and notifies the claimers when
// it released any, so that another relay takes them before its next poll.
func TestReleaseHandsBackLeasesAndAnnouncesThem(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	got := claimedDeliveries(t, db, "me", 4)

	listener, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, `LISTEN relay_deliveries`); err != nil {
		t.Fatal(err)
	}
	notified := func() bool {
		wait, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := listener.WaitForNotification(wait)
		return err == nil
	}

	wrongToken := store.Lease{ID: got[0].ID, Token: "00000000-0000-0000-0000-000000000000"}
	if n, err := store.Release(ctx, db.Pool, "me", []store.Lease{wrongToken}); err != nil || n != 0 {
		t.Fatalf("release with another token: %d, %v; want 0", n, err)
	}
	if notified() {
		t.Error("notified although nothing was released")
	}
	if n, err := store.Release(ctx, db.Pool, "someone else", nil); err != nil || n != 0 {
		t.Fatalf("release of another owner's: %d, %v; want 0", n, err)
	}
	if n, err := store.Release(ctx, db.Pool, "me", []store.Lease{got[0].Lease}); err != nil || n != 1 {
		t.Fatalf("release of one lease: %d, %v; want 1", n, err)
	}
	if !notified() {
		t.Error("no notification for a released lease")
	}
	if n, err := store.Release(ctx, db.Pool, "me", nil); err != nil || n != 3 {
		t.Fatalf("release of all of the owner's: %d, %v; want 3", n, err)
	}
	if !notified() {
		t.Error("no notification for released leases")
	}
	var leased int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.deliveries WHERE lease_owner IS NOT NULL OR lease_token IS NOT NULL`).Scan(&leased); err != nil || leased != 0 {
		t.Errorf("%d deliveries still leased (%v)", leased, err)
	}
}
