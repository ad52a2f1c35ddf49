package store_test

// BenchmarkKeptLog measures what keeping the log costs: the relay's hot statements and
// the README's audit queries on a log of 100,000, 1,000,000 and 10,000,000 events, with
// a delivery history of RELAY_RETENTION's 30 days, on a PostgreSQL with fsync on. It
// takes a while (the 10M fill writes ~14 GiB) and is skipped unless asked for:
//
//	RELAY_BENCH_KEPT_LOG=1 go test -run '^$' -bench KeptLog -timeout 3h ./relay/internal/store/
//
// RELAY_BENCH_KEPT_LOG_SIZES=100000,1000000 picks other sizes; RELAY_BENCH_KEPT_LOG_DIR
// keeps the cluster's data there, so that a later run reuses what was filled;
// RELAY_BENCH_KEPT_LOG_PLANS=1 logs the plan of each audit query at each size.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/testutil"
)

// keptLogOp is one measured operation: run does it once and returns how long the part
// that counts took (setup around it is not timed).
type keptLogOp struct {
	name string
	run  func(b *testing.B, env *keptLogEnv) time.Duration
}

// keptLogEnv is what the operations work on at one size.
type keptLogEnv struct {
	pool   *pgxpool.Pool
	head   time.Time // when the log's last filled event was written
	postID string    // a post with events from the log's first days on
	search string    // the 'post.*' webhook

	emits, walBytes int64 // what the emits measured so far wrote to the WAL
}

func BenchmarkKeptLog(b *testing.B) {
	if os.Getenv("RELAY_BENCH_KEPT_LOG") != "1" {
		b.Skip("set RELAY_BENCH_KEPT_LOG=1 to fill and measure a log of up to 10,000,000 events (an hour or more, ~20 GiB)")
	}
	sizes := keptLogSizes(b)
	pool := keptLogPool(b)
	var fsync string
	if err := pool.QueryRow(context.Background(), `SHOW fsync`).Scan(&fsync); err != nil {
		b.Fatal(err)
	}
	b.Logf("PostgreSQL fsync=%s", fsync)
	results := map[string]map[int]time.Duration{} // op -> size -> median
	for _, n := range sizes {
		if have := keptLogFilled(b, pool); have > n {
			b.Logf("skipping %d events: the log already holds %d (a smaller size needs a fresh RELAY_BENCH_KEPT_LOG_DIR)", n, have)
			continue
		}
		env := prepareKeptLog(b, pool, n)
		if os.Getenv("RELAY_BENCH_KEPT_LOG_PLANS") == "1" {
			logKeptLogPlans(b, env)
		}
		for _, op := range keptLogOps {
			b.Run(fmt.Sprintf("events=%d/%s", n, op.name), func(b *testing.B) {
				var took []time.Duration
				for b.Loop() {
					took = append(took, op.run(b, env))
				}
				slices.Sort(took)
				p50, p90 := took[len(took)/2], took[len(took)*9/10]
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p90.Microseconds())/1000, "p90-ms")
				if results[op.name] == nil {
					results[op.name] = map[int]time.Duration{}
				}
				results[op.name][n] = p50
			})
		}
		reportKeptLogSizes(b, pool, n)
	}
	b.Log("median per operation (fsync=" + fsync + ")\n" + keptLogTable(sizes, results))
}

func keptLogSizes(b *testing.B) []int {
	b.Helper()
	env := os.Getenv("RELAY_BENCH_KEPT_LOG_SIZES")
	if env == "" {
		return []int{100_000, 1_000_000, 10_000_000}
	}
	var sizes []int
	for _, f := range strings.Split(env, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 10_000 {
			b.Fatalf("RELAY_BENCH_KEPT_LOG_SIZES: %q is not a size of at least 10000", f)
		}
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	return sizes
}

// prepareKeptLog grows the log to n events with its delivery history and live work,
// vacuums and analyzes it as autovacuum would have, and finds what the queries ask about.
func prepareKeptLog(b *testing.B, pool *pgxpool.Pool, n int) *keptLogEnv {
	b.Helper()
	ctx := context.Background()
	head := keptLogHead(n)
	fillKeptLog(b, pool, n)
	writeKeptLogHistory(b, pool, head)
	addKeptLogLiveWork(b, pool, head)
	start := time.Now()
	if _, err := pool.Exec(ctx, `VACUUM (ANALYZE) relay.outbox, relay.deliveries, relay.delivery_attempts, relay.webhooks`); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d events: vacuum analyze %v", n, time.Since(start).Round(time.Millisecond))
	env := &keptLogEnv{pool: pool, head: head}
	if err := pool.QueryRow(ctx, `SELECT payload -> 'post' -> 'current' ->> 'id' FROM relay.outbox
		WHERE metadata ->> 'event' = 'post.edited' ORDER BY transaction_id, "offset" LIMIT 1`).Scan(&env.postID); err != nil {
		b.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT id FROM relay.webhooks WHERE event = 'post.*'`).Scan(&env.search); err != nil {
		b.Fatal(err)
	}
	return env
}

var keptLogOps = append([]keptLogOp{
	{"emit", emitOne},
	{"claim", claimOnce},
	{"fanout", fanOutOne},
	{"outbox-read", readOutboxBatch},
	// What the maintainer does every minute with the defaults (nothing is old enough
	// to go), and with an event retention that finds nothing to prune.
	{"prune-pass", func(b *testing.B, e *keptLogEnv) time.Duration {
		return prunePass(b, e, store.Cutoffs{Deliveries: e.head.Add(-keptLogDeliveryWindow), StripeIDs: e.head.Add(-keptLogDeliveryWindow)})
	}},
	{"prune-events-pass", func(b *testing.B, e *keptLogEnv) time.Duration {
		return prunePass(b, e, store.Cutoffs{Events: keptLogStart})
	}},
}, auditOps()...)

func auditOps() []keptLogOp {
	var ops []keptLogOp
	for _, a := range keptLogAudits {
		ops = append(ops, keptLogOp{a.op, auditQuery(a.title, a.vars)})
	}
	return ops
}

const ghostPost = `{"post":{"current":{"id":"6650c3a1e4b0c3d2a1f0e9d8","title":"Hello","slug":"hello","html":"<p>` +
	`Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna ` +
	`aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.` +
	`</p>","status":"published","visibility":"public","url":"https://blog.example.com/hello/"},"previous":{"status":"draft"}}}`

// emitOne is a CMS transaction's relay.emit, committed (fsync'd) on its own; it also
// reports the WAL an emit writes (the outbox row and every index entry, and the full
// page images of pages first touched since a checkpoint).
func emitOne(b *testing.B, e *keptLogEnv) time.Duration {
	b.StopTimer()
	before := walLSN(b, e)
	b.StartTimer()
	start := time.Now()
	emitEvent(b, e, "post.edited")
	took := time.Since(start)
	b.StopTimer()
	e.emits++
	e.walBytes += walLSN(b, e) - before
	b.ReportMetric(float64(e.walBytes)/float64(e.emits), "WAL-B/emit")
	b.StartTimer()
	return took
}

// walLSN is the current WAL position, in bytes. The query itself writes no WAL.
func walLSN(b *testing.B, e *keptLogEnv) int64 {
	b.Helper()
	var lsn int64
	if err := e.pool.QueryRow(context.Background(), `SELECT pg_current_wal_insert_lsn() - '0/0'`).Scan(&lsn); err != nil {
		b.Fatal(err)
	}
	return lsn
}

func emitEvent(b *testing.B, e *keptLogEnv, name string) string {
	b.Helper()
	var id string
	if err := e.pool.QueryRow(context.Background(), `SELECT relay.emit($1, $2::text)::text`, name, ghostPost).Scan(&id); err != nil {
		b.Fatal(err)
	}
	return id
}

// claimOnce is a relay's claim of the due work (as the pipeline asks: 100 at most, 16
// per webhook), released again untimed.
func claimOnce(b *testing.B, e *keptLogEnv) time.Duration {
	ctx := context.Background()
	start := time.Now()
	got, err := store.Claim(ctx, e.pool, store.ClaimRequest{Owner: "bench", Limit: 100, DefaultRoom: 16, Lease: time.Minute})
	took := time.Since(start)
	if err != nil || len(got) == 0 {
		b.Fatalf("claim: %d deliveries, %v", len(got), err)
	}
	b.StopTimer()
	if _, err := store.Release(ctx, e.pool, "bench", nil); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	return took
}

// fanOutOne fans out a new post.published (to the search index, the static site and
// the archive), leasing the deliveries as the relay does; they are then marked
// delivered, untimed, so that the claim's work stays the same.
func fanOutOne(b *testing.B, e *keptLogEnv) time.Duration {
	ctx := context.Background()
	b.StopTimer()
	id := emitEvent(b, e, "post.published")
	b.StartTimer()
	start := time.Now()
	out, err := store.FanOut(ctx, e.pool, store.FanOutRequest{EventID: id, Events: 100, Owner: "bench-fanout",
		Lease: time.Minute, DefaultRoom: 16, Limit: 1000})
	took := time.Since(start)
	if err != nil || len(out.Covered) != 1 || len(out.Leased) != 3 {
		b.Fatalf("fan-out: %d events, %d deliveries, %v; want 1 and 3", len(out.Covered), len(out.Leased), err)
	}
	b.StopTimer()
	if _, err := e.pool.Exec(ctx, `UPDATE relay.deliveries SET status = 'succeeded', lease_owner = NULL, lease_token = NULL,
		lease_expires_at = NULL, next_attempt_at = NULL WHERE lease_owner = 'bench-fanout'`); err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	return took
}

// readOutboxBatch is watermill-sql's read of the next batch of 100 events (the
// relay's select, store.OutboxSchema), with the consumer group 100 events behind the
// head, in the subscriber's transaction (rolled back, so the position stays).
func readOutboxBatch(b *testing.B, e *keptLogEnv) time.Duration {
	ctx := context.Background()
	b.StopTimer()
	if _, err := e.pool.Exec(ctx, `
		INSERT INTO relay.outbox_offsets (consumer_group, offset_acked, last_processed_transaction_id)
		SELECT $1, "offset", transaction_id FROM relay.outbox ORDER BY transaction_id DESC, "offset" DESC OFFSET 100 LIMIT 1
		ON CONFLICT (consumer_group) DO UPDATE SET offset_acked = EXCLUDED.offset_acked,
		       last_processed_transaction_id = EXCLUDED.last_processed_transaction_id`, store.ConsumerGroup); err != nil {
		b.Fatal(err)
	}
	q, err := store.NewOutboxSchema(100).SelectQuery(wsql.SelectQueryParams{Topic: store.OutboxTopic,
		ConsumerGroup: store.ConsumerGroup, OffsetsAdapter: store.OutboxOffsets()})
	if err != nil {
		b.Fatal(err)
	}
	b.StartTimer()
	start := time.Now()
	var n int
	err = pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, q.Query, q.Args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		return errRollback
	})
	took := time.Since(start)
	if err != errRollback || n != 100 {
		b.Fatalf("outbox read: %d rows, %v; want 100", n, err)
	}
	return took
}

var errRollback = fmt.Errorf("rolled back on purpose")

// The audit queries, with what they ask about at each size.
var keptLogAudits = []struct {
	op, title string
	vars      func(*keptLogEnv) map[string]any
}{
	{"audit-post", "Everything that happened to one post", func(e *keptLogEnv) map[string]any {
		return map[string]any{"post_id": e.postID}
	}},
	{"audit-missed", "Every event one webhook missed", func(e *keptLogEnv) map[string]any {
		return map[string]any{"webhook_id": e.search, "since": e.head.Add(-24 * time.Hour), "until": e.head}
	}},
	{"audit-changed", "What changed between two dates", func(e *keptLogEnv) map[string]any {
		return map[string]any{"since": e.head.Add(-24 * time.Hour), "until": e.head}
	}},
	{"audit-by-type", "Events between two dates by type", func(e *keptLogEnv) map[string]any {
		return map[string]any{"since": e.head.Add(-24 * time.Hour), "until": e.head}
	}},
}

// logKeptLogPlans logs EXPLAIN (ANALYZE, BUFFERS) of each audit query.
func logKeptLogPlans(b *testing.B, e *keptLogEnv) {
	b.Helper()
	for _, a := range keptLogAudits {
		sql, args, err := testutil.PsqlVars(testutil.READMEQuery(b, "## Auditing", a.title), a.vars(e))
		if err != nil {
			b.Fatal(err)
		}
		rows, err := e.pool.Query(context.Background(), "EXPLAIN (ANALYZE, BUFFERS) "+sql, args...)
		if err != nil {
			b.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			b.Fatal(err)
		}
		b.Logf("%s:\n%s", a.op, strings.Join(lines, "\n"))
	}
}

// auditQuery runs the README's query titled title, as written, with vars.
func auditQuery(title string, vars func(*keptLogEnv) map[string]any) func(*testing.B, *keptLogEnv) time.Duration {
	return func(b *testing.B, e *keptLogEnv) time.Duration {
		sql, args, err := testutil.PsqlVars(testutil.READMEQuery(b, "## Auditing", title), vars(e))
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		rows, err := e.pool.Query(context.Background(), sql, args...)
		if err != nil {
			b.Fatalf("%s: %v", title, err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		took := time.Since(start)
		if err := rows.Err(); err != nil || n == 0 {
			b.Fatalf("%s: %d rows, %v", title, n, err)
		}
		b.ReportMetric(float64(n), "rows")
		return took
	}
}

func prunePass(b *testing.B, e *keptLogEnv, c store.Cutoffs) time.Duration {
	start := time.Now()
	st, err := store.Prune(context.Background(), e.pool, c)
	took := time.Since(start)
	if err != nil || st != (store.PruneStats{}) {
		b.Fatalf("prune pass: %+v, %v; want nothing to prune", st, err)
	}
	return took
}

// reportKeptLogSizes logs the size of each table and index of the log and its history.
func reportKeptLogSizes(b *testing.B, pool *pgxpool.Pool, n int) {
	b.Helper()
	rows, err := pool.Query(context.Background(), `
		SELECT c.relname, pg_size_pretty(pg_table_size(c.oid)),
		       coalesce((SELECT string_agg(i.relname || ' ' || pg_size_pretty(pg_relation_size(i.oid)), ', ' ORDER BY i.relname)
		                   FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid), '')
		  FROM pg_class c JOIN pg_namespace s ON s.oid = c.relnamespace
		 WHERE s.nspname = 'relay' AND c.relname IN ('outbox', 'deliveries', 'delivery_attempts')
		 ORDER BY c.relname DESC`)
	if err != nil {
		b.Fatal(err)
	}
	var lines []string
	for rows.Next() {
		var rel, size, indexes string
		if err := rows.Scan(&rel, &size, &indexes); err != nil {
			b.Fatal(err)
		}
		lines = append(lines, fmt.Sprintf("  %s: table %s; indexes: %s", rel, size, indexes))
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	b.Logf("%d events, sizes:\n%s", n, strings.Join(lines, "\n"))
}

// keptLogTable writes results as a table: one row per operation, one column per size.
func keptLogTable(sizes []int, results map[string]map[int]time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%-18s", "operation")
	for _, n := range sizes {
		fmt.Fprintf(&sb, " %14s", fmt.Sprintf("%d events", n))
	}
	sb.WriteString("\n")
	for _, op := range keptLogOps {
		fmt.Fprintf(&sb, "%-18s", op.name)
		for _, n := range sizes {
			fmt.Fprintf(&sb, " %14s", fmt.Sprintf("%.2f ms", float64(results[op.name][n].Microseconds())/1000))
		}
		sb.WriteString("\n")
	}
	return sb.String()
}
