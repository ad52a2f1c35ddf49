package store_test

// The data of BenchmarkKeptLog: a year of a Ghost site's events, written fast with
// INSERT ... SELECT generate_series, and the delivery history RELAY_RETENTION keeps.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/pglocal"
	"github.com/relayhq/relay/schema"
	"github.com/relayhq/relay/testutil"
)

// The log grows at one rate, 10,000,000 events a year (27,400 a day, a busy site with
// its members), from keptLogStart: at 100,000 events it is 3.7 days old, at 1,000,000
// 37 days, at 10,000,000 a year. So a day's window holds the same events at every size,
// and what changes with size is only what a kept log adds: the years behind it.
var (
	keptLogStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	keptLogStep  = 365 * 24 * time.Hour / 10_000_000
)

// keptLogHead is when the log's n-th event was written.
func keptLogHead(n int) time.Time { return keptLogStart.Add(time.Duration(n) * keptLogStep) }

// keptLogDeliveryWindow is the history of deliveries kept, RELAY_RETENTION's default.
const keptLogDeliveryWindow = 720 * time.Hour

// keptLogPool returns the benchmark's database: on TEST_DATABASE_URL when set (its
// durability is the server's), else on a private cluster with fsync on, whose data stays
// in RELAY_BENCH_KEPT_LOG_DIR when set, so that a later run reuses the log it filled.
func keptLogPool(b *testing.B) *pgxpool.Pool {
	b.Helper()
	if os.Getenv(testutil.EnvDatabaseURL) != "" {
		return testutil.NewDB(b).Pool
	}
	ctx := context.Background()
	dir, keep := os.Getenv("RELAY_BENCH_KEPT_LOG_DIR"), true
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("/tmp", "relay-kept-log-*"); err != nil {
			b.Fatal(err)
		}
		keep = false
	}
	// As root the server runs as another user, who must reach the data directory.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: dir + "/data", Stdout: os.Stderr, Settings: map[string]string{
		// A modest production server: durable (fsync, synchronous_commit and
		// full_page_writes stay on), 1 GiB of shared buffers on this 24 GiB machine, and
		// room for the fill's WAL between checkpoints.
		"shared_buffers": "1GB", "max_wal_size": "8GB", "maintenance_work_mem": "512MB",
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := srv.Stop(context.Background()); err != nil {
			b.Errorf("stop the benchmark's PostgreSQL: %v", err)
		}
		if !keep {
			_ = os.RemoveAll(dir)
		}
	})
	if err := srv.CreateDatabase(ctx, "relay", ""); err != nil && !errors.Is(err, pglocal.ErrDatabaseExists) {
		b.Fatal(err)
	}
	if err := schema.Migrate(ctx, srv.URL("relay")); err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, srv.URL("relay"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// keptLogSetupSQL creates the site's webhooks (a search index on posts, a CRM on
// members, a static site rebuilt on publish, an archive of everything), created before
// the log starts, and the benchmark's own record of how far the fill got.
const keptLogSetupSQL = `
CREATE TABLE IF NOT EXISTS public.kept_log_fill (events bigint NOT NULL, history_until timestamptz NOT NULL);
INSERT INTO public.kept_log_fill SELECT 0, '-infinity' WHERE NOT EXISTS (SELECT 1 FROM public.kept_log_fill);
INSERT INTO relay.webhooks (event, target_url, created_at)
SELECT e, 'https://' || h || '.example.com/hook', '2024-06-01'
  FROM (VALUES ('post.*', 'search'), ('member.*', 'crm'), ('post.published', 'site'), ('*', 'archive')) AS v(e, h)
ON CONFLICT DO NOTHING;
SELECT 1`

// keptLogFillSQL writes events $1 .. $1+$2-1 of the log in one statement (one
// transaction: one transaction_id, offsets in order), as Ghost would have: a mix of
// post, page, member and tag events and the odd site.changed, about a post or member of
// a few tens of thousands, with Ghost's payload shapes, 0.2-2 KiB each (1.1 KiB on
// average). Ids are UUIDv7 as relay.emit makes them.
const keptLogFillSQL = `
WITH g AS (
    SELECT i, $3::timestamptz + i * $4::interval AS at,
           CASE WHEN r < 40 THEN 'post.edited' WHEN r < 45 THEN 'post.published' WHEN r < 50 THEN 'post.added'
                WHEN r < 51 THEN 'post.unpublished' WHEN r < 52 THEN 'post.deleted' WHEN r < 57 THEN 'post.published.edited'
                WHEN r < 60 THEN 'page.edited' WHEN r < 70 THEN 'member.added' WHEN r < 90 THEN 'member.edited'
                WHEN r < 92 THEN 'member.deleted' WHEN r < 94 THEN 'tag.added' WHEN r < 99 THEN 'tag.edited'
                ELSE 'site.changed' END AS event
      FROM generate_series($1::bigint, $1::bigint + $2 - 1) AS i, LATERAL (SELECT (i * 37) % 100 AS r) AS rr
), k AS (
    SELECT g.*, split_part(event, '.', 1) AS resource,
           CASE split_part(event, '.', 1) WHEN 'post' THEN (i * 7919) % 40000 WHEN 'page' THEN (i * 7919) % 300
                WHEN 'member' THEN (i * 104729) % 150000 ELSE (i * 7919) % 2000 END AS n,
           to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS ts
      FROM g
), r AS (
    SELECT k.*, left(md5(resource || n), 24) AS id FROM k
), body AS (
    SELECT i, at, event, CASE
      WHEN resource IN ('post', 'page') THEN
        '{"' || resource || '":{"current":' ||
        CASE WHEN event LIKE '%.deleted' THEN '{}' ELSE
          '{"id":"' || id || '","uuid":"' || md5(id)::uuid || '","title":"' || initcap(resource) || ' number ' || n ||
          '","slug":"' || resource || '-' || n || '","html":"<p>' || repeat(md5(i::text) || ' ', 8 + (i % 29)::int) ||
          '</p>","comment_id":"' || id || '","feature_image":null,"featured":false,"status":"' ||
          CASE WHEN event LIKE '%unpublished' THEN 'draft' ELSE 'published' END ||
          '","visibility":"public","created_at":"2024-06-01T10:00:00.000Z","updated_at":"' || ts ||
          '","published_at":"2024-06-02T09:00:00.000Z","custom_excerpt":null,"url":"https://blog.example.com/' ||
          resource || '-' || n || '/","excerpt":"' || repeat(md5(n::text), 3) ||
          '","reading_time":' || (1 + n % 12) || ',"tags":[{"id":"' || left(md5('tag' || (n % 2000)), 24) ||
          '","name":"Tag ' || (n % 2000) || '","slug":"tag-' || (n % 2000) ||
          '"}],"authors":[{"id":"1","name":"Ann Author","slug":"ann","email":"ann@example.com"}]}' END ||
        ',"previous":' ||
        CASE WHEN event LIKE '%.deleted' THEN '{"id":"' || id || '","title":"' || initcap(resource) || ' number ' || n || '"}'
             ELSE '{"updated_at":"' || ts || '","html":"<p>' || repeat(md5((i - 1)::text), 3) || '</p>"}' END || '}}'
      WHEN resource = 'member' THEN
        '{"member":{"current":' ||
        CASE WHEN event = 'member.deleted' THEN '{}' ELSE
          '{"id":"' || id || '","uuid":"' || md5(id)::uuid || '","email":"member' || n || '@example.com","name":"Member ' || n ||
          '","note":null,"geolocation":"{\"country\":\"Belgium\",\"city\":\"Ghent\"}","subscribed":true,"status":"' ||
          CASE WHEN n % 7 = 0 THEN 'paid' ELSE 'free' END || '","created_at":"2024-07-01T08:00:00.000Z","updated_at":"' || ts ||
          '","labels":[],"newsletters":[{"id":"' || left(md5('weekly'), 24) ||
          '","name":"Weekly","description":null,"status":"active"}],"avatar_image":"https://www.gravatar.com/avatar/' ||
          md5('member' || n) || '?s=250&r=g&d=blank","email_disabled":false,"comped":false}' END ||
        ',"previous":' ||
        CASE WHEN event = 'member.deleted' THEN '{"id":"' || id || '","email":"member' || n || '@example.com"}'
             ELSE '{"updated_at":"' || ts || '","name":"Member ' || (n + 1) || '"}' END || '}}'
      WHEN resource = 'tag' THEN
        '{"tag":{"current":{"id":"' || id || '","name":"Tag ' || n || '","slug":"tag-' || n || '","description":"' ||
        repeat(md5(n::text), 2) || '","visibility":"public","url":"https://blog.example.com/tag/tag-' || n ||
        '/","updated_at":"' || ts || '"},"previous":{"updated_at":"' || ts || '"}}}'
      ELSE '{}' END AS payload
      FROM r
)
INSERT INTO relay.outbox ("uuid", payload, metadata, transaction_id, created_at)
SELECT relay.uuid_v7()::text, payload::json, json_build_object('event', event), pg_current_xact_id(), at
  FROM body ORDER BY i`

// keptLogBatch is how many events one fill statement writes: short transactions, as
// everything here must be.
const keptLogBatch = 5000

// keptLogFilled is how many events the fill has written so far.
func keptLogFilled(b *testing.B, pool *pgxpool.Pool) int {
	b.Helper()
	ctx := context.Background()
	if _, err := pool.Exec(ctx, keptLogSetupSQL); err != nil {
		b.Fatal(err)
	}
	var have int
	if err := pool.QueryRow(ctx, `SELECT events FROM public.kept_log_fill`).Scan(&have); err != nil {
		b.Fatal(err)
	}
	return have
}

// fillKeptLog grows the log to n events (a reused log keeps what it has).
func fillKeptLog(b *testing.B, pool *pgxpool.Pool, n int) {
	b.Helper()
	ctx := context.Background()
	have := keptLogFilled(b, pool)
	start := time.Now()
	for i := have; i < n; i += keptLogBatch {
		size := min(keptLogBatch, n-i)
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, keptLogFillSQL, i, size, keptLogStart, keptLogStep); err != nil {
				return fmt.Errorf("fill events %d..%d: %w", i, i+size, err)
			}
			_, err := tx.Exec(ctx, `UPDATE public.kept_log_fill SET events = $1`, i+size)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		if done := i + size - have; done%500_000 == 0 || i+size == n {
			b.Logf("filled %d events (%.0f events/s)", i+size, float64(done)/time.Since(start).Seconds())
		}
	}
}

// keptLogHistorySQL writes the deliveries (and their attempts) of the events written in
// [$1, $2) to the webhooks they match, as the relay would have: most succeeded at the
// first attempt, some at the second, 2% failed after eight, 1% cancelled.
const keptLogHistorySQL = `
WITH d AS (
    INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, created_at, delivered_at, last_status_code, last_error)
    SELECT o."uuid"::uuid, w.id, s.status, s.attempts, o.created_at + interval '20 ms',
           CASE WHEN s.status = 'succeeded' THEN o.created_at + s.attempts * interval '1 minute' END,
           CASE s.status WHEN 'succeeded' THEN 200 WHEN 'failed' THEN 503 END,
           CASE s.status WHEN 'failed' THEN 'HTTP 503' WHEN 'cancelled' THEN 'webhook disabled: gone' END
      FROM relay.outbox o
      JOIN relay.webhooks w ON relay.event_matches(w.event, o.metadata ->> 'event') AND w.created_at <= o.created_at
     CROSS JOIN LATERAL (SELECT abs(hashtext(o."uuid" || w.id)) % 100 AS h) AS x
     CROSS JOIN LATERAL (SELECT CASE WHEN h < 97 THEN 'succeeded' WHEN h < 99 THEN 'failed' ELSE 'cancelled' END AS status,
                                CASE WHEN h < 90 THEN 1 WHEN h < 97 THEN 2 WHEN h < 99 THEN 8 ELSE 0 END AS attempts) AS s
     WHERE o.created_at >= $1 AND o.created_at < $2
     ORDER BY o.transaction_id, o."offset", w.id
    ON CONFLICT (event_id, webhook_id) DO NOTHING
    RETURNING id, status, attempts, created_at
)
INSERT INTO relay.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error, relay_instance)
SELECT d.id, n, d.created_at + (n - 1) * interval '1 minute', 35 + n,
       CASE WHEN n = d.attempts AND d.status = 'succeeded' THEN 200 ELSE 503 END,
       CASE WHEN n = d.attempts AND d.status = 'succeeded' THEN NULL ELSE 'HTTP 503' END, 'bench'
  FROM d, generate_series(1, d.attempts) AS n`

// writeKeptLogHistory gives the log the delivery history RELAY_RETENTION keeps at its
// head (events up to an hour before it; the last hour is the live work's), a day per
// statement, then prunes what fell out of the window with store.Prune, and reports how
// fast that went.
func writeKeptLogHistory(b *testing.B, pool *pgxpool.Pool, head time.Time) {
	b.Helper()
	ctx := context.Background()
	// The previous size's live work has been delivered meanwhile.
	if _, err := pool.Exec(ctx, `UPDATE relay.deliveries SET status = 'succeeded', next_attempt_at = NULL,
		lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL WHERE status = 'pending'`); err != nil {
		b.Fatal(err)
	}
	var from time.Time
	if err := pool.QueryRow(ctx, `SELECT greatest(history_until, $1) FROM public.kept_log_fill`, head.Add(-keptLogDeliveryWindow)).Scan(&from); err != nil {
		b.Fatal(err)
	}
	until := head.Add(-time.Hour)
	for t := from; t.Before(until); t = t.Add(24 * time.Hour) {
		end := t.Add(24 * time.Hour)
		if end.After(until) {
			end = until
		}
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, keptLogHistorySQL, t, end); err != nil {
				return fmt.Errorf("history %s..%s: %w", t, end, err)
			}
			_, err := tx.Exec(ctx, `UPDATE public.kept_log_fill SET history_until = $1`, end)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	st, err := store.Prune(ctx, pool, store.Cutoffs{Deliveries: head.Add(-keptLogDeliveryWindow)})
	if err != nil {
		b.Fatal(err)
	}
	if st.Deliveries > 0 {
		took := time.Since(start)
		b.Logf("pruned %d deliveries past the delivery window in %v (%.0f deliveries/s, attempts included)",
			st.Deliveries, took.Round(time.Millisecond), float64(st.Deliveries)/took.Seconds())
	}
}

// addKeptLogLiveWork makes the last hour's deliveries the live work a claim meets: the
// search index and the CRM have theirs due (slow receivers, a backlog), the archive's
// receiver is down and its deliveries wait for a retry an hour away.
func addKeptLogLiveWork(b *testing.B, pool *pgxpool.Pool, head time.Time) {
	b.Helper()
	if _, err := pool.Exec(context.Background(), `
		INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, next_attempt_at, created_at)
		SELECT o."uuid"::uuid, w.id, 'pending', CASE WHEN w.event = '*' THEN 1 ELSE 0 END,
		       CASE WHEN w.event = '*' THEN now() + interval '1 hour' ELSE now() - interval '1 second' END, o.created_at
		  FROM relay.outbox o
		  JOIN relay.webhooks w ON relay.event_matches(w.event, o.metadata ->> 'event') AND w.event <> 'post.published'
		 WHERE o.created_at >= $1 AND o.created_at < $2
		-- A reused log has them from an earlier run, delivered since.
		ON CONFLICT (event_id, webhook_id) DO UPDATE
		   SET status = 'pending', attempts = EXCLUDED.attempts, next_attempt_at = EXCLUDED.next_attempt_at,
		       lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL`, head.Add(-time.Hour), head); err != nil {
		b.Fatal(err)
	}
}
