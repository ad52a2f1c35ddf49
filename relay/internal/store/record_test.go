package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

// The record statement keeps relay.webhook_minutes exact: one row per webhook and
// minute, counting the attempts it recorded (not those whose lease was lost) by outcome,
// with their durations and, for successes, their commit-to-receipt lags in buckets.
func TestRecordCountsAttemptsPerWebhookAndMinute(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	got := claimedDeliveries(t, db, "me", 5)
	now := time.Now()
	outs := []store.Outcome{
		{Lease: got[0].Lease, Status: store.Succeeded, StatusCode: 200, Duration: 5 * time.Millisecond, CommittedAt: now.Add(-30 * time.Millisecond)},
		{Lease: got[1].Lease, Status: store.Succeeded, StatusCode: 200, Duration: 300 * time.Millisecond, CommittedAt: now.Add(-2 * time.Second)},
		{Lease: got[2].Lease, Status: store.Pending, StatusCode: 500, Error: "HTTP 500", Duration: 20 * time.Millisecond, NextAt: now.Add(time.Hour)},
		{Lease: got[3].Lease, Status: store.Failed, Error: "timeout", Duration: 20 * time.Second},
		// A lease another relay took meanwhile: not recorded, not counted.
		{Lease: store.Lease{ID: got[4].ID, Token: "00000000-0000-0000-0000-000000000000"}, Status: store.Succeeded, StatusCode: 200},
	}
	for i := range outs {
		outs[i].Started = now
	}
	recorded, err := store.Record(ctx, db.Pool, "me", outs, store.Next{})
	if err != nil || len(recorded.IDs) != 4 {
		t.Fatalf("recorded %d, %v", len(recorded.IDs), err)
	}
	var attempts, succeeded, retried, failed int
	var dur, lag []int32
	if err := db.Pool.QueryRow(ctx, `SELECT sum(attempts), sum(succeeded), sum(retried), sum(failed),
		ARRAY[sum(d1), sum(d2), sum(d3), sum(d4), sum(d5), sum(d6), sum(d7), sum(d8), sum(d9), sum(d10)]::int[],
		ARRAY[sum(l1), sum(l2), sum(l3), sum(l4), sum(l5), sum(l6), sum(l7), sum(l8), sum(l9), sum(l10)]::int[]
		FROM relay.webhook_minutes`).
		Scan(&attempts, &succeeded, &retried, &failed, &dur, &lag); err != nil {
		t.Fatal(err)
	}
	if attempts != 4 || succeeded != 2 || retried != 1 || failed != 1 {
		t.Errorf("counted %d attempts (%d succeeded, %d retried, %d failed), want 4 (2, 1, 1)", attempts, succeeded, retried, failed)
	}
	// 5 ms in <=10, 20 ms in <=50, 300 ms in <=500, 20 s above 10 s.
	if !equalInts(dur, []int32{1, 1, 0, 0, 1, 0, 0, 0, 0, 1}) {
		t.Errorf("duration buckets %v, want [1 1 0 0 1 0 0 0 0 1]", dur)
	}
	if !equalInts(lag, []int32{0, 1, 0, 0, 0, 0, 1, 0, 0, 0}) {
		t.Errorf("lag buckets %v, want [0 1 0 0 0 0 1 0 0 0]", lag)
	}
}

func equalInts(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
