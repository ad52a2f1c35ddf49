package store

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Rollup bounds: minutes are rolled up once they are RollupSettle old (an attempt is
// recorded as soon as it finishes, so its minute is written by then), the hour in
// progress included; the last RollupRecompute are recomputed on every run, so that an
// attempt recorded late (a relay that could not reach the database for a while) still
// counts. RollupMaxSpan bounds one run's work when catching up on a long history.
const (
	RollupSettle    = time.Minute
	RollupRecompute = 3 * time.Hour
	RollupMaxSpan   = 24 * time.Hour
)

// rollUpSQL recomputes relay.webhook_hours from relay.webhook_minutes for the minutes in
// [$1, $2) ($1 on an hour) and moves the mark up to $2. Hours are UTC hours, whatever
// the session's time zone. Rows are written in key order, so relays running it at once
// lock them in the same order.
var rollUpSQL = `
WITH hours AS (
    INSERT INTO relay.webhook_hours AS h (webhook_id, hour, attempts, succeeded, retried, failed, ` + strings.Join(BucketColumns, ", ") + `)
    SELECT webhook_id, date_trunc('hour', minute AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', sum(attempts), sum(succeeded), sum(retried), sum(failed),
           ` + columnList("sum(%s)", BucketColumns) + `
      FROM relay.webhook_minutes
     WHERE minute >= $1 AND minute < $2
     GROUP BY 1, 2
     ORDER BY 1, 2
    ON CONFLICT (webhook_id, hour) DO UPDATE
       SET attempts = excluded.attempts, succeeded = excluded.succeeded, retried = excluded.retried,
           failed = excluded.failed, ` + columnList("%[1]s = excluded.%[1]s", BucketColumns) + `
    RETURNING 1
), mark AS (
    INSERT INTO relay.webhook_hours_rolled AS r (rolled_until) VALUES ($2)
    ON CONFLICT (singleton) DO UPDATE SET rolled_until = greatest(r.rolled_until, excluded.rolled_until)
)
SELECT count(*) FROM hours`

// RollUpHours rolls relay.webhook_minutes up into relay.webhook_hours as of now: the
// minutes since the mark (at most RollupMaxSpan of them per call) and the last
// RollupRecompute again, up to RollupSettle ago. It returns how many hour rows it wrote.
func RollUpHours(ctx context.Context, q Querier, now time.Time) (int64, error) {
	end := now.Add(-RollupSettle).Truncate(time.Minute)
	mark, err := RolledUntil(ctx, q)
	if err != nil {
		return 0, err
	}
	if mark.IsZero() {
		// First run: from the oldest minute kept.
		var oldest *time.Time
		if err := q.QueryRow(ctx, `SELECT min(minute) FROM relay.webhook_minutes`).Scan(&oldest); err != nil {
			return 0, fmt.Errorf("roll up webhook hours: %w", err)
		}
		if oldest == nil {
			return 0, nil // nothing recorded yet; the mark waits for the first minute
		}
		mark = *oldest
	}
	// Whole hours are recomputed, from the start of the earliest hour touched.
	start := minTime(end.Add(-RollupRecompute), mark).Truncate(time.Hour)
	if end.Sub(start) > RollupMaxSpan {
		end = start.Add(RollupMaxSpan)
	}
	if !end.After(start) {
		return 0, nil
	}
	var n int64
	if err := q.QueryRow(ctx, rollUpSQL, start, end).Scan(&n); err != nil {
		return 0, fmt.Errorf("roll up webhook hours: %w", err)
	}
	return n, nil
}

// RolledUntil is how far the hour rollup goes: each row of relay.webhook_hours holds
// the minutes of its hour before this mark, so readers add the minutes from the mark
// on; zero before the first rollup.
func RolledUntil(ctx context.Context, q Querier) (time.Time, error) {
	var t *time.Time
	err := q.QueryRow(ctx, `SELECT (SELECT rolled_until FROM relay.webhook_hours_rolled)`).Scan(&t)
	if err != nil {
		return time.Time{}, fmt.Errorf("read the webhook hours mark: %w", err)
	}
	if t == nil {
		return time.Time{}, nil
	}
	return *t, nil
}

// columnList writes format for each column, comma-separated.
func columnList(format string, cols []string) string {
	parts := make([]string, len(cols))
	for i, c := range cols {
		parts[i] = fmt.Sprintf(format, c)
	}
	return strings.Join(parts, ", ")
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
