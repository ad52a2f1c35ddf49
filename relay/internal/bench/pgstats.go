package bench

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Statement is one normalised statement's share of a run (pg_stat_statements).
type Statement struct {
	// Label names the statement (fan-out, claim, record, ...) or, for one the bench
	// does not know, is the start of its text.
	Label             string  `json:"label"`
	Query             string  `json:"query"` // normalised text, whitespace collapsed, at most 300 characters
	Calls             int64   `json:"calls"`
	Rows              int64   `json:"rows"`
	MeanMicros        float64 `json:"mean_us"`
	TotalMillis       float64 `json:"total_ms"`
	MicrosPerDelivery float64 `json:"us_per_delivery"`
}

// TableSize is one relay table's pg_total_relation_size (heap, TOAST and indexes).
type TableSize struct {
	Table string `json:"table"`
	Bytes int64  `json:"bytes"`
}

// topStatements is how many statements a scenario reports.
const topStatements = 8

// enableStatements makes pg_stat_statements readable in the scratch database behind
// pool and returns "" when it is, or why not ("n/a: ..."). The view only works when the
// server preloads the library; CREATE EXTENSION itself needs a superuser.
func (b *bench) enableStatements(ctx context.Context, pool *pgxpool.Pool) string {
	if b.srv != nil && !b.stmtsPreloaded {
		return "n/a: pg_stat_statements is not installed beside the server binaries"
	}
	if _, err := pool.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`); err != nil {
		return "n/a: CREATE EXTENSION pg_stat_statements: " + pgMessage(err)
	}
	if _, err := pool.Exec(ctx, `SELECT 1 FROM pg_stat_statements LIMIT 1`); err != nil {
		return "n/a: " + pgMessage(err)
	}
	return ""
}

func pgMessage(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return err.Error()
}

type stmtRow struct {
	query       string
	calls, rows int64
	totalMillis float64
}

// stmtSnapshot is pg_stat_statements for one database at one moment, by queryid.
type stmtSnapshot map[int64]stmtRow

const snapshotSQL = `
SELECT coalesce(queryid, 0), min(query), sum(calls)::bigint, sum(rows)::bigint, sum(total_exec_time)
  FROM pg_stat_statements
 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 GROUP BY 1`

func snapshotStatements(ctx context.Context, pool *pgxpool.Pool) (stmtSnapshot, error) {
	rows, err := pool.Query(ctx, snapshotSQL)
	if err != nil {
		return nil, fmt.Errorf("bench: read pg_stat_statements: %w", err)
	}
	defer rows.Close()
	s := stmtSnapshot{}
	for rows.Next() {
		var id int64
		var r stmtRow
		if err := rows.Scan(&id, &r.query, &r.calls, &r.rows, &r.totalMillis); err != nil {
			return nil, fmt.Errorf("bench: read pg_stat_statements: %w", err)
		}
		s[id] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bench: read pg_stat_statements: %w", err)
	}
	return s, nil
}

// breakdown fills in s's statements: what ran between before and after, the relay's
// alone (the bench's own reads and emits are left out), top ones by total time.
func (s *Scenario) breakdown(before, after stmtSnapshot) {
	var all []Statement
	var total float64
	for id, a := range after {
		bf := before[id]
		calls := a.calls - bf.calls
		if calls <= 0 || benchOwn(a.query) {
			continue
		}
		st := Statement{Label: label(a.query), Query: normalise(a.query, 300), Calls: calls, Rows: a.rows - bf.rows,
			TotalMillis: a.totalMillis - bf.totalMillis}
		st.MeanMicros = 1000 * st.TotalMillis / float64(calls)
		if s.Deliveries > 0 {
			st.MicrosPerDelivery = 1000 * st.TotalMillis / float64(s.Deliveries)
		}
		total += st.TotalMillis
		all = append(all, st)
	}
	slices.SortFunc(all, func(a, b Statement) int { return cmp.Compare(b.TotalMillis, a.TotalMillis) })
	for i := range all {
		if all[i].Label == labelFanout {
			f := all[i]
			s.Fanout = &f
			break
		}
	}
	if s.Deliveries > 0 {
		s.StatementsMicrosPerDelivery = 1000 * total / float64(s.Deliveries)
	}
	s.Statements = all[:min(len(all), topStatements)]
}

// benchOwn tells the bench's statements from the relay's: its snapshots and size
// reads, and the emits of (a)'s writer.
func benchOwn(q string) bool {
	return strings.Contains(q, "pg_stat_statements") || strings.Contains(q, "pg_total_relation_size") ||
		strings.Contains(q, "relay.emit(")
}

const labelFanout = "fan-out"

// label names the relay's statements by what they touch, so that the names survive
// rewrites of their text; anything else is named by the start of its text.
func label(q string) string {
	n := normalise(q, 0)
	has := func(s string) bool { return strings.Contains(n, s) }
	switch {
	case has("INSERT INTO relay.delivery_attempts"):
		return "record (attempts, delivery state)"
	case has("INSERT INTO relay.deliveries"):
		return labelFanout
	case has("FOR UPDATE") && has("SKIP LOCKED") && has("relay.deliveries"):
		return "claim"
	case has("WITH last_processed AS") || has("FROM relay.outbox "):
		return "outbox read (watermill)"
	case has("INSERT INTO relay.outbox_offsets") && has("DO UPDATE"):
		return "outbox ack (watermill)"
	case has("outbox_offsets"):
		return "outbox offsets (watermill)"
	case strings.HasPrefix(strings.ToLower(n), "begin isolation level repeatable read"):
		return "BEGIN repeatable read (watermill)"
	case strings.HasPrefix(strings.ToUpper(n), "VACUUM"):
		return "vacuum"
	}
	return normalise(q, 60)
}

// normalise drops -- comments, collapses whitespace and cuts q to at most max
// characters (0: no limit).
func normalise(q string, max int) string {
	lines := strings.Split(q, "\n")
	for i, l := range lines {
		if c := strings.Index(l, "--"); c >= 0 {
			lines[i] = l[:c]
		}
	}
	n := strings.Join(strings.Fields(strings.Join(lines, "\n")), " ")
	if max > 0 && len(n) > max {
		n = n[:max] + "…"
	}
	return n
}

const tableSizesSQL = `
SELECT c.relname::text, pg_total_relation_size(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'relay' AND c.relkind IN ('r', 'p')`

func tableSizes(ctx context.Context, pool *pgxpool.Pool) (map[string]int64, error) {
	rows, err := pool.Query(ctx, tableSizesSQL)
	if err != nil {
		return nil, fmt.Errorf("bench: table sizes: %w", err)
	}
	defer rows.Close()
	sizes := map[string]int64{}
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return nil, fmt.Errorf("bench: table sizes: %w", err)
		}
		sizes["relay."+name] = n
	}
	return sizes, rows.Err()
}

// sizes fills in the tables that grew from before to after (the outbox, the deliveries,
// their attempts, the per-minute counts, and whatever else the run writes) with their
// size after, and their sum per delivery.
func (s *Scenario) sizes(before, after map[string]int64) {
	var total int64
	for t, n := range after {
		if n > before[t] {
			s.Tables = append(s.Tables, TableSize{Table: t, Bytes: n})
			total += n
		}
	}
	slices.SortFunc(s.Tables, func(a, b TableSize) int { return cmp.Compare(b.Bytes, a.Bytes) })
	if s.Deliveries > 0 {
		s.PGBytesPerDelivery = float64(total) / float64(s.Deliveries)
	}
}
