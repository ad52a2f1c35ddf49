package audit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/audit"
	"github.com/relayhq/relay/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestParseTimeTakesInstantsDatesAndDurationsAgo(t *testing.T) {
	t.Parallel()
	now := time.Date(2024, 5, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2024-05-01T08:30:00Z":      time.Date(2024, 5, 1, 8, 30, 0, 0, time.UTC),
		"2024-05-01T08:30:00+02:00": time.Date(2024, 5, 1, 6, 30, 0, 0, time.UTC),
		"2024-05-01":                time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC),
		"24h":                       now.Add(-24 * time.Hour),
		"90m":                       now.Add(-90 * time.Minute),
		"7d":                        now.Add(-7 * 24 * time.Hour),
	} {
		got, err := audit.ParseTime(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "yesterday", "-5h", "2024-13-01", "5 days"} {
		if _, err := audit.ParseTime(bad, now); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}

// TestDocumentedQueriesRun runs every SQL block of the README's Auditing section against a database
// with events, deliveries and attempts, so the documented queries cannot rot when the
// schema changes. psql variables (:'name') become parameters.
func TestDocumentedQueriesRun(t *testing.T) {
	t.Parallel()
	blocks := testutil.READMESQL(t, "## Auditing")
	if len(blocks) < 8 {
		t.Fatalf("found %d SQL blocks in the README's Auditing section", len(blocks))
	}
	db := testutil.NewDB(t)
	ctx := context.Background()
	var eventID, webhookID string
	if err := db.Pool.QueryRow(ctx, `SELECT relay.emit('post.published', '{"post":{"current":{"id":"p1"},"previous":{}}}')::text`).Scan(&eventID); err != nil {
		t.Fatal(err)
	}
	if err := db.Pool.QueryRow(ctx, `INSERT INTO relay.webhooks (event, target_url, created_at) VALUES ('post.*', 'https://example.com/', now() - interval '1 hour') RETURNING id`).Scan(&webhookID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Pool.Exec(ctx, `
		WITH d AS (INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, last_status_code, last_error)
		           VALUES ($1, $2, 'failed', 2, 500, 'HTTP 500') RETURNING id)
		INSERT INTO relay.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error, response_excerpt)
		SELECT id, n, now(), 10, CASE WHEN n = 1 THEN NULL ELSE 500 END,
		       CASE WHEN n = 1 THEN 'timeout after 10s' ELSE 'HTTP 500' END, 'oops'
		  FROM d, generate_series(1, 2) n`, eventID, webhookID); err != nil {
		t.Fatal(err)
	}

	vars := map[string]any{"event_id": eventID, "webhook_id": webhookID, "post_id": "p1",
		"since": time.Now().Add(-time.Hour), "until": time.Now().Add(time.Hour)}
	for _, b := range blocks {
		sql, args, err := testutil.PsqlVars(b, vars)
		if err != nil {
			t.Fatalf("%v in\n%s", err, b)
		}
		rows, err := db.Pool.Query(ctx, sql, args...)
		if err != nil {
			t.Errorf("query failed: %v\n%s", err, b)
			continue
		}
		n := 0
		for rows.Next() {
			n++
		}
		if err := rows.Err(); err != nil {
			t.Errorf("query failed: %v\n%s", err, b)
		}
		rows.Close()
		if n == 0 {
			t.Errorf("query returned nothing on a database with a failed delivery:\n%s", b)
		}
	}
}

// Events and deliveries can be listed by who created them.
func TestListFiltersBySource(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	for _, q := range []string{
		`SELECT relay.emit('post.added', '{}')`,
		`SELECT relay.emit_internal('stripe.charge.refunded', '{}', 'stripe')`,
		`SELECT relay.emit_internal('tag.added', '{}', 'ghost:` + strings.Repeat("a", 24) + `')`,
		`SELECT relay.emit_internal('tag.added', '{}', 'ghost:` + strings.Repeat("b", 24) + `')`,
	} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	st := audit.Store{Pool: db.Pool}
	for source, want := range map[string]int{"emit": 1, "stripe": 1, "ghost": 2, "ghost:" + strings.Repeat("a", 24): 1, "": 4} {
		events, _, err := st.ListEvents(ctx, audit.Filter{Source: source})
		if err != nil || len(events) != want {
			t.Errorf("source %q: %d events (%v), want %d", source, len(events), err, want)
		}
		for _, e := range events {
			if source != "" && !strings.HasPrefix(e.Source, source) {
				t.Errorf("source %q listed an event from %q", source, e.Source)
			}
		}
	}
	for _, bad := range []string{"evil", "ghost:", "ghost:' OR 1=1 --", "emit,stripe"} {
		if _, _, err := st.ListEvents(ctx, audit.Filter{Source: bad}); err == nil {
			t.Errorf("source %q accepted", bad)
		}
	}
}
