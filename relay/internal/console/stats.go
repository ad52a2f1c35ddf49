package console

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/relayhq/relay/relay/internal/store"
)

// The console's figures come from relay.webhook_minutes (what the record statement
// counts per webhook and minute) and its hourly rollup relay.webhook_hours, never from
// the attempts themselves: a day is at most 24 hour rows and 120 minute rows per
// webhook, however busy it was.

// nBuckets is the number of buckets of each kind (the bounds, plus one for above them).
const nBuckets = len(store.DurationBuckets) + 1

// stats are counts of attempts over a span.
type stats struct {
	Attempts, Succeeded, Retried, Failed int64
	Duration, Lag                        [nBuckets]int64
}

func (s *stats) add(o stats) {
	s.Attempts += o.Attempts
	s.Succeeded += o.Succeeded
	s.Retried += o.Retried
	s.Failed += o.Failed
	for i := range s.Duration {
		s.Duration[i] += o.Duration[i]
		s.Lag[i] += o.Lag[i]
	}
}

// SuccessRate is the share of attempts that got a 2xx (-1: no attempts).
func (s stats) SuccessRate() float64 {
	if s.Attempts == 0 {
		return -1
	}
	return float64(s.Succeeded) / float64(s.Attempts)
}

// P95 is the 95th percentile attempt duration, as the bound of its bucket.
func (s stats) P95() string { return quantileLabel(s.Duration[:], store.DurationBuckets[:], 0.95) }

// quantileBucket is the index of the bucket holding quantile q of counts (-1: none).
func quantileBucket(counts []int64, q float64) int {
	var total int64
	for _, n := range counts {
		total += n
	}
	if total == 0 {
		return -1
	}
	need := int64(q*float64(total) + 0.999999)
	var run int64
	for i, n := range counts {
		run += n
		if run >= need {
			return i
		}
	}
	return len(counts) - 1
}

func quantileLabel(counts []int64, bounds []int64, q float64) string {
	i := quantileBucket(counts, q)
	switch {
	case i < 0:
		return "—"
	case i >= len(bounds):
		return "> " + msLabel(bounds[len(bounds)-1])
	}
	return "≤ " + msLabel(bounds[i])
}

// msLabel writes a bucket bound: 50 ms, 2.5 s, 1 min, 1 h.
func msLabel(ms int64) string {
	switch {
	case ms >= 3600000 && ms%3600000 == 0:
		return strconv.FormatInt(ms/3600000, 10) + " h"
	case ms >= 60000 && ms%60000 == 0:
		return strconv.FormatInt(ms/60000, 10) + " min"
	case ms >= 1000:
		return strings.TrimSuffix(strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64), ".0") + " s"
	}
	return strconv.FormatInt(ms, 10) + " ms"
}

// statColumns sums the counters and each bucket, in scanDest's order.
var statColumns = func() string {
	cols := []string{"sum(attempts)::bigint", "sum(succeeded)::bigint", "sum(retried)::bigint", "sum(failed)::bigint"}
	for _, c := range store.BucketColumns {
		cols = append(cols, fmt.Sprintf("coalesce(sum(%s), 0)::bigint", c))
	}
	return strings.Join(cols, ", ")
}()

func (s *stats) scanDest() []any {
	d := []any{&s.Attempts, &s.Succeeded, &s.Retried, &s.Failed}
	for i := range s.Duration {
		d = append(d, &s.Duration[i])
	}
	for i := range s.Lag {
		d = append(d, &s.Lag[i])
	}
	return d
}

// A span is [$1, now) with $1 on an hour, split where the rollup stops (its mark, read
// in the same statement): hour rows (each with its minutes before the mark) for the
// hours in [$1, mark), minutes from the mark on. A day is then 24 or 25 rows per webhook,
// plus a minute or two.

// daySince is where "the last 24 hours" start: the start of the hour 24 hours ago, so
// that the figures are whole hours (24 to 25 of them) and come from the rollup.
func daySince(now time.Time) time.Time { return now.Add(-24 * time.Hour).Truncate(time.Hour) }

// spanRows selects the rows of the span from $1, with their time as t, optionally of
// one webhook.
func spanRows(webhookFilter string) string {
	cols := "webhook_id, attempts, succeeded, retried, failed, " + strings.Join(store.BucketColumns, ", ")
	mark := `(SELECT greatest(coalesce((SELECT rolled_until FROM relay.webhook_hours_rolled), $1), $1))`
	return `SELECT hour AS t, ` + cols + ` FROM relay.webhook_hours WHERE hour >= $1 AND hour < ` + mark + webhookFilter + `
	UNION ALL SELECT minute, ` + cols + ` FROM relay.webhook_minutes WHERE minute >= ` + mark + webhookFilter
}

// webhookStats sums each webhook's attempts since since, on an hour (one webhook's when
// webhookID is set).
func webhookStats(ctx context.Context, q store.Querier, since time.Time, webhookID string) (map[string]stats, error) {
	args := []any{since}
	filter := ""
	if webhookID != "" {
		filter = " AND webhook_id = $2"
		args = append(args, webhookID)
	}
	rows, err := q.Query(ctx, `SELECT webhook_id, `+statColumns+` FROM (`+spanRows(filter)+`) s GROUP BY webhook_id`, args...)
	if err != nil {
		return nil, fmt.Errorf("read webhook statistics: %w", err)
	}
	defer rows.Close()
	out := map[string]stats{}
	for rows.Next() {
		var id string
		var st stats
		if err := rows.Scan(append([]any{&id}, st.scanDest()...)...); err != nil {
			return nil, fmt.Errorf("read webhook statistics: %w", err)
		}
		out[id] = st
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read webhook statistics: %w", err)
	}
	return out, nil
}

// point is one bucket of a time series.
type point struct {
	At time.Time
	stats
}

// series sums every webhook's attempts per step (a minute or an hour) since since,
// oldest first, with empty steps filled in.
func series(ctx context.Context, q store.Querier, since, now time.Time, step time.Duration) ([]point, error) {
	var sql string
	var args []any
	if step == time.Minute {
		sql = `SELECT minute, ` + statColumns + ` FROM relay.webhook_minutes WHERE minute >= $1 GROUP BY minute`
		args = []any{since}
	} else {
		sql = `SELECT date_trunc('hour', t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', ` + statColumns + ` FROM (` + spanRows("") + `) s GROUP BY 1`
		args = []any{since}
	}
	rows, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("read delivery series: %w", err)
	}
	defer rows.Close()
	byTime := map[int64]stats{}
	for rows.Next() {
		var t time.Time
		var st stats
		if err := rows.Scan(append([]any{&t}, st.scanDest()...)...); err != nil {
			return nil, fmt.Errorf("read delivery series: %w", err)
		}
		k := t.Truncate(step).Unix()
		cur := byTime[k]
		cur.add(st)
		byTime[k] = cur
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read delivery series: %w", err)
	}
	var out []point
	for t := since.Truncate(step); !t.After(now); t = t.Add(step) {
		out = append(out, point{At: t, stats: byTime[t.Unix()]})
	}
	return out, nil
}
