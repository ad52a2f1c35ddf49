package console_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"net/http/httptest"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/relay/internal/relaytest"
	"github.com/relayhq/relay/relay/internal/server"
	"github.com/relayhq/relay/relay/internal/store"
)

// benchSeed fills the database set-based, in a few statements: webhooks, events over the
// last three days (one in a hundred from Stripe, one in fifty from a Ghost site),
// deliveries (five per event: 97% succeeded, 1.5% failed after three attempts, 1%
// pending, 0.1% cancelled), their attempts, the per-minute statistics those attempts
// make, and the hourly rollup maintenance keeps.
const benchSeed = `
INSERT INTO relay.webhooks (id, event, target_url, name, secret, created_at)
SELECT lpad(to_hex(i), 24, '0'),
       (ARRAY['post.published','post.*','page.*','member.added','*','tag.*','post.edited','member.*','page.published','post.added'])[1 + i % 10],
       'https://hooks.example.com/h/' || i || '?token=t' || i, 'Webhook ' || i,
       'whsec_' || encode(sha256(i::text::bytea), 'base64'), now() - interval '30 days'
  FROM generate_series(1, $1::int) AS i;

INSERT INTO relay.outbox ("uuid", created_at, payload, metadata, transaction_id, source)
SELECT gen_random_uuid()::text, now() - interval '3 days' + (i * interval '3 days' / $2::int),
       json_build_object('post', json_build_object('current', json_build_object('id', i::text, 'title', 'Post ' || i,
           'status', 'published', 'html', repeat('x', 200)), 'previous', json_build_object('status', 'draft'))),
       json_build_object('event', CASE WHEN i % 100 = 0 THEN 'stripe.invoice.paid'
           ELSE (ARRAY['post.published','post.edited','post.added','page.published','member.added','tag.added','member.edited','page.edited'])[1 + i % 8] END),
       (1000 + i)::text::xid8,
       CASE WHEN i % 100 = 0 THEN 'stripe' WHEN i % 50 = 1 THEN 'ghost:0123456789abcdef01234567' ELSE 'emit' END
  FROM generate_series(1, $2::int) AS i;

INSERT INTO relay.stripe_events (id, type, livemode, stripe_created_at, received_at, event_id, raw)
SELECT 'evt_' || o."offset", 'invoice.paid', false, o.created_at, o.created_at, o."uuid"::uuid, '{}'
  FROM relay.outbox o WHERE o.source = 'stripe';

INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, next_attempt_at, last_status_code, last_error, created_at, delivered_at)
SELECT o."uuid"::uuid, lpad(to_hex(1 + (o."offset" * 7 + k * 13) % $1::int), 24, '0'), s.status,
       CASE s.status WHEN 'failed' THEN 3 ELSE 1 END,
       CASE WHEN s.status = 'pending' THEN now() + interval '5 minutes' END,
       CASE s.status WHEN 'succeeded' THEN 200 WHEN 'cancelled' THEN NULL ELSE 503 END,
       CASE s.status WHEN 'succeeded' THEN NULL WHEN 'cancelled' THEN 'webhook disabled: bench' ELSE 'HTTP 503' END,
       o.created_at, CASE WHEN s.status = 'succeeded' THEN o.created_at + interval '40 ms' END
  FROM relay.outbox o
 CROSS JOIN generate_series(0, 4) AS k
 CROSS JOIN LATERAL (SELECT CASE WHEN (o."offset" * 5 + k) % 1000 = 7 THEN 'cancelled'
                                 WHEN (o."offset" * 5 + k) % 200 < 3 THEN 'failed'
                                 WHEN (o."offset" * 5 + k) % 200 < 5 THEN 'pending'
                                 ELSE 'succeeded' END AS status) s;

INSERT INTO relay.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error, response_excerpt, relay_instance)
SELECT d.id, a, d.created_at + (a - 1) * interval '5 seconds' + interval '2 ms', (d.id % 97) + 5,
       CASE WHEN d.status = 'succeeded' THEN 200 ELSE 503 END,
       CASE WHEN d.status = 'succeeded' THEN NULL ELSE 'HTTP 503' END,
       CASE WHEN d.status = 'succeeded' THEN NULL ELSE 'Service Unavailable' END, 'bench-relay'
  FROM relay.deliveries d CROSS JOIN LATERAL generate_series(1, d.attempts) AS a;

INSERT INTO relay.webhook_minutes (webhook_id, minute, attempts, succeeded, retried, failed, d1, d2, d3, l2)
SELECT d.webhook_id, date_trunc('minute', a.started_at), count(*),
       count(*) FILTER (WHERE a.status_code = 200),
       count(*) FILTER (WHERE a.status_code <> 200 AND a.attempt < d.attempts),
       count(*) FILTER (WHERE a.status_code <> 200 AND a.attempt = d.attempts),
       count(*) FILTER (WHERE a.duration_ms <= 10), count(*) FILTER (WHERE a.duration_ms > 10 AND a.duration_ms <= 50),
       count(*) FILTER (WHERE a.duration_ms > 50),
       count(*) FILTER (WHERE a.status_code = 200)
  FROM relay.delivery_attempts a JOIN relay.deliveries d ON d.id = a.delivery_id
 GROUP BY 1, 2;

INSERT INTO relay.outbox_offsets (consumer_group, offset_acked, last_processed_transaction_id)
SELECT 'relay', max("offset"), max(transaction_id) FROM relay.outbox;

INSERT INTO relay.ghost_sites (url, relay_url, events, admin_key_id, admin_secret_plain, inbound_secret_plain, received_count)
VALUES ('https://blog.example.com', 'https://relay.example.com', ARRAY['post.published'], '6650c3a1b2c4d5e6f7a8b9c0', repeat('ab', 32), 'x', 4000);
`

// BenchmarkConsolePages times every page of the console, with typical filters, on a
// database of 1,000,000 deliveries (1,030,000 attempts) to 100 webhooks from 200,000
// events: one request per iteration, signed in, through the relay's whole HTTP handler.
// RELAY_BENCH_DELIVERIES scales it (deliveries; events are a fifth of them);
// RELAY_BENCH_TRACE=1 prints every statement slower than 3 ms (trace_test.go).
func BenchmarkConsolePages(b *testing.B) {
	deliveries := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("RELAY_BENCH_DELIVERIES")); err == nil && v >= 1000 {
		deliveries = v
	}
	e := newEnv(b)
	ctx := context.Background()
	start := time.Now()
	// The sizes are the benchmark's own numbers, written into the script (which runs as
	// one multi-statement Exec, so it cannot take parameters).
	seed := strings.NewReplacer("$1::int", "100", "$2::int", strconv.Itoa(deliveries/5)).Replace(benchSeed)
	if _, err := e.db.Pool.Exec(ctx, seed); err != nil {
		b.Fatal(err)
	}
	// What maintenance does once a minute: a day of hours per run until caught up.
	for i := 0; i < 10; i++ {
		if _, err := store.RollUpHours(ctx, e.db.Pool, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	// The steady state of a running relay: history vacuumed (all-visible, as autovacuum
	// leaves it; a VACUUM cannot mark pages while autovacuum's ANALYZE of the fresh rows
	// still holds an older snapshot, hence the retries), pending deliveries just touched
	// by a claim (their pages not all-visible, as they never are for long).
	for i := 0; ; i++ {
		if _, err := e.db.Pool.Exec(ctx, `VACUUM ANALYZE`); err != nil {
			b.Fatal(err)
		}
		var vis, pages float64
		if err := e.db.Pool.QueryRow(ctx, `SELECT relallvisible, relpages FROM pg_class WHERE oid = 'relay.deliveries'::regclass`).Scan(&vis, &pages); err != nil {
			b.Fatal(err)
		}
		if vis >= 0.95*pages || i == 20 {
			b.Logf("deliveries: %.0f of %.0f pages all-visible", vis, pages)
			break
		}
		time.Sleep(time.Second)
	}
	if _, err := e.db.Pool.Exec(ctx, `UPDATE relay.deliveries SET next_attempt_at = next_attempt_at WHERE status = 'pending'`); err != nil {
		b.Fatal(err)
	}
	var nd, na, nm int64
	if err := e.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM relay.deliveries), (SELECT count(*) FROM relay.delivery_attempts),
		(SELECT count(*) FROM relay.webhook_minutes)`).Scan(&nd, &na, &nm); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d deliveries, %d attempts, %d webhook minutes in %v", nd, na, nm, time.Since(start).Round(time.Second))

	var hook, eventID, failedHook string
	var deliveryID int64
	if err := e.db.Pool.QueryRow(ctx, `SELECT d.webhook_id, d.event_id::text, d.id FROM relay.deliveries d
		WHERE d.status = 'failed' ORDER BY d.id DESC LIMIT 1`).Scan(&failedHook, &eventID, &deliveryID); err != nil {
		b.Fatal(err)
	}
	hook = lpadHex(7)
	if os.Getenv("RELAY_BENCH_TRACE") != "" {
		cfg, _ := pgxpool.ParseConfig(e.db.URL)
		cfg.ConnConfig.Tracer = slowTracer{}
		pool, _ := pgxpool.NewWithConfig(ctx, cfg)
		defer pool.Close()
		srv := httptest.NewServer(server.New(server.Deps{Pool: pool, Log: relaytest.Logger(b), Keys: e.keys}))
		defer srv.Close()
		e.srv = srv
	}
	c := e.client(b)
	e.signIn(b, c, e.key)
	pages := []struct{ name, path string }{
		{"overview", "/ui/"},
		{"webhooks", "/ui/webhooks"},
		{"webhook", "/ui/webhooks/" + hook},
		{"webhook-new", "/ui/webhooks/new"},
		{"webhook-edit", "/ui/webhooks/" + hook + "/edit"},
		{"webhook-delete", "/ui/webhooks/" + hook + "/delete"},
		{"deliveries", "/ui/deliveries"},
		{"deliveries-webhook", "/ui/deliveries?webhook=" + hook},
		{"deliveries-failed", "/ui/deliveries?status=failed"},
		{"deliveries-webhook-failed", "/ui/deliveries?webhook=" + failedHook + "&status=failed"},
		{"deliveries-cancelled", "/ui/deliveries?status=cancelled"},
		{"deliveries-event", "/ui/deliveries?event=post.published"},
		{"deliveries-event-none", "/ui/deliveries?event=member.deleted"},
		{"deliveries-range", "/ui/deliveries?since=50h&until=49h"},
		{"delivery", fmt.Sprintf("/ui/deliveries/%d", deliveryID)},
		{"events", "/ui/events"},
		{"events-name", "/ui/events?event=tag.added"},
		{"events-source", "/ui/events?source=stripe"},
		{"events-range", "/ui/events?since=50h&until=49h"},
		{"event", "/ui/events/" + eventID},
		{"stripe", "/ui/stripe"},
		{"ghost", "/ui/ghost"},
	}
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				resp, err := c.Get(e.srv.URL + p.path)
				if err != nil {
					b.Fatal(err)
				}
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %d", p.path, resp.StatusCode)
				}
			}
		})
	}
}

func lpadHex(i int) string { return fmt.Sprintf("%024x", i) }
