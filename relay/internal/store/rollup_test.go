package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

// The hourly rollup holds, for every hour, exactly what its minutes before the mark add
// up to; it catches up on a long history a day per run, recounts the last hours (so a
// late record still counts), and takes the hour in progress up to a minute ago.
func TestRollUpHoursAddsUpTheMinutes(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 30, 0, 0, time.UTC)
	// 50 hours of minutes for two webhooks: every minute 3 attempts (2 ok, 1 retried),
	// durations in bucket 2, lags in bucket 3.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO relay.webhook_minutes (webhook_id, minute, attempts, succeeded, retried, failed, d2, l3)
		SELECT w, m, 3, 2, 1, 0, 3, 2
		  FROM unnest(ARRAY['aaaaaaaaaaaaaaaaaaaaaaaa', 'bbbbbbbbbbbbbbbbbbbbbbbb']) AS w,
		       generate_series($1::timestamptz - interval '50 hours', $1::timestamptz - interval '1 minute', interval '1 minute') AS m`, now); err != nil {
		t.Fatal(err)
	}
	var runs int
	for runs = 1; runs < 10; runs++ {
		if _, err := store.RollUpHours(ctx, db.Pool, now); err != nil {
			t.Fatal(err)
		}
		mark, err := store.RolledUntil(ctx, db.Pool)
		if err != nil {
			t.Fatal(err)
		}
		if mark.Equal(now.Add(-time.Minute)) {
			break
		}
	}
	if runs != 3 {
		t.Errorf("caught up on 50 hours in %d runs, want 3 (24 hours a run)", runs)
	}
	check := func(when string) {
		t.Helper()
		var bad int
		// Every column of an hour row against the sum of its minutes.
		cols := append([]string{"attempts", "succeeded", "retried", "failed"}, store.BucketColumns...)
		sums, differ := make([]string, len(cols)), make([]string, len(cols))
		for i, c := range cols {
			sums[i] = fmt.Sprintf("sum(%[1]s)::int AS %[1]s", c)
			differ[i] = fmt.Sprintf("h.%[1]s IS DISTINCT FROM m.%[1]s", c)
		}
		if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM (
			SELECT webhook_id, date_trunc('hour', minute) AS hour, `+strings.Join(sums, ", ")+`
			  FROM relay.webhook_minutes WHERE minute < $1 GROUP BY 1, 2) m
			FULL JOIN relay.webhook_hours h USING (webhook_id, hour)
			WHERE `+strings.Join(differ, " OR "), mark(t, db)).Scan(&bad); err != nil {
			t.Fatal(err)
		}
		if bad != 0 {
			t.Errorf("%s: %d hour rows differ from their minutes", when, bad)
		}
	}
	check("caught up")
	var inProgress int
	if err := db.Pool.QueryRow(ctx, `SELECT sum(attempts) FROM relay.webhook_hours WHERE hour = $1`, now.Truncate(time.Hour)).Scan(&inProgress); err != nil || inProgress != 2*29*3 {
		t.Errorf("the hour in progress holds %d attempts (%v), want its 29 settled minutes' %d", inProgress, err, 2*29*3)
	}

	// An attempt recorded late, into an hour two hours back: the next run recounts it.
	if _, err := db.Pool.Exec(ctx, `UPDATE relay.webhook_minutes SET attempts = attempts + 5, failed = failed + 5
		WHERE webhook_id = 'aaaaaaaaaaaaaaaaaaaaaaaa' AND minute = $1`, now.Add(-2*time.Hour).Truncate(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := store.RollUpHours(ctx, db.Pool, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	check("after a late record")
}

func mark(t *testing.T, db *testutil.DB) time.Time {
	t.Helper()
	m, err := store.RolledUntil(context.Background(), db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
