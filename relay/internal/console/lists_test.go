package console_test

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/internal/webhook"
)

var (
	deliveryLink = regexp.MustCompile(`<a class="strong mono" href="/ui/deliveries/(\d+)">`)
	eventLink    = regexp.MustCompile(`<a class="mono" href="/ui/events/([0-9a-f-]{36})">`)
	olderLink    = regexp.MustCompile(`<a class="btn small" href="([^"]+)">Older →</a>`)
)

// pagesOf follows Older links from u and returns every page.
func pagesOf(t *testing.T, e *env, c *http.Client, u string) []string {
	t.Helper()
	var pages []string
	for u != "" && len(pages) < 500 {
		code, page, _ := get(t, c, e.srv.URL+u)
		if code != http.StatusOK {
			t.Fatalf("%s: %d\n%s", u, code, clip(page))
		}
		pages = append(pages, page)
		u = ""
		if m := olderLink.FindStringSubmatch(page); m != nil {
			u = html.UnescapeString(m[1])
		}
	}
	return pages
}

func ids(re *regexp.Regexp, pages []string) []string {
	var out []string
	for _, p := range pages {
		for _, m := range re.FindAllStringSubmatch(p, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// The Deliveries page filters by webhook, event, status and time, newest first, a page
// at a time, and every page's Older link continues exactly where it stopped: every
// matching delivery is listed once, however rare the match, even when a filter no index
// answers (the event's name) stops a page at its scan window.
func TestDeliveriesFilterAndPageThroughEverything(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	a := addHook(t, e, webhook.Input{Event: ptr("*"), TargetURL: ptr("https://a.example/")})
	b := addHook(t, e, webhook.Input{Event: ptr("*"), TargetURL: ptr("https://b.example/")})
	// 6,000 events a minute apart, oldest first: every 1,000th is a page.published, the
	// rest post.edited; each has a delivery to a, every third one to b as well; every
	// 7th of a's failed.
	if _, err := e.db.Pool.Exec(ctx, `
		INSERT INTO relay.outbox ("uuid", created_at, payload, metadata, transaction_id)
		SELECT gen_random_uuid()::text, now() - (6000 - i) * interval '1 minute', '{}',
		       json_build_object('event', CASE WHEN i % 1000 = 0 THEN 'page.published' ELSE 'post.edited' END), (100 + i)::text::xid8
		  FROM generate_series(1, 6000) AS i`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `
		INSERT INTO relay.deliveries (event_id, webhook_id, status, created_at)
		SELECT o."uuid"::uuid, w.id, CASE WHEN w.id = $1 AND o."offset" % 7 = 0 THEN 'failed' ELSE 'succeeded' END, o.created_at
		  FROM relay.outbox o CROSS JOIN relay.webhooks w
		 WHERE w.id = $1 OR o."offset" % 3 = 0
		 ORDER BY o."offset", w.id`, a.ID); err != nil {
		t.Fatal(err)
	}
	count := func(cond string, args ...any) int {
		var n int
		if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.deliveries d JOIN relay.outbox o ON o."uuid"::uuid = d.event_id WHERE `+cond, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	c := e.client(t)
	e.signIn(t, c, e.key)
	for _, tc := range []struct {
		query string
		cond  string
		args  []any
	}{
		{"/ui/deliveries", "true", nil},
		{"/ui/deliveries?webhook=" + b.ID, "d.webhook_id = $1", []any{b.ID}},
		{"/ui/deliveries?status=failed", "d.status = 'failed'", nil},
		{"/ui/deliveries?webhook=" + a.ID + "&status=failed&since=" + at(-2000*time.Minute), "d.webhook_id = $1 AND d.status = 'failed' AND d.created_at >= $2", []any{a.ID, at(-2000 * time.Minute)}},
		{"/ui/deliveries?event=page.published", "o.metadata->>'event' = 'page.published'", nil},
		{"/ui/deliveries?event=page.*&webhook=" + b.ID, "o.metadata->>'event' = 'page.published' AND d.webhook_id = $1", []any{b.ID}},
		{"/ui/deliveries?since=" + at(-3000*time.Minute) + "&until=" + at(-2000*time.Minute), "d.created_at >= $1 AND d.created_at < $2", []any{at(-3000 * time.Minute), at(-2000 * time.Minute)}},
		{"/ui/deliveries?status=succeeded&webhook=" + a.ID, "d.status = 'succeeded' AND d.webhook_id = $1", []any{a.ID}},
		{"/ui/deliveries?status=cancelled", "d.status = 'cancelled'", nil},
	} {
		pages := pagesOf(t, e, c, tc.query)
		got := ids(deliveryLink, pages)
		want := count(tc.cond, tc.args...)
		seen := map[string]bool{}
		for _, id := range got {
			if seen[id] {
				t.Errorf("%s: delivery %s listed twice", tc.query, id)
			}
			seen[id] = true
		}
		if len(got) != want {
			t.Errorf("%s: %d deliveries over %d pages, want %d", tc.query, len(got), len(pages), want)
		}
		if (strings.Contains(tc.query, "event=") || strings.Contains(tc.query, "cancelled")) && !strings.Contains(tc.query, "webhook=") && !strings.Contains(strings.Join(pages, ""), "searched back to") {
			t.Errorf("%s: no page said it stopped at its scan window", tc.query)
		}
	}
	for _, bad := range []string{"?status=lost", "?since=yesterday", "?event=POST", "?webhook=x", "?since=1h&until=2h", "?cursor=-1"} {
		code, page, _ := get(t, c, e.srv.URL+"/ui/deliveries"+bad)
		if code != http.StatusBadRequest || !strings.Contains(page, `class="field-error"`) && !strings.Contains(page, "flash bad") {
			t.Errorf("/ui/deliveries%s: %d, want 400 with the reason", bad, code)
		}
	}
}

// The Events page searches by name, source and time in commit order, a page at a time;
// an id goes straight to the event's page.
func TestEventsSearchAndPageThroughEverything(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.db.Pool.Exec(ctx, `
		INSERT INTO relay.outbox ("uuid", created_at, payload, metadata, transaction_id, source)
		SELECT gen_random_uuid()::text, now() - (21000 - i) * interval '1 second', '{}',
		       json_build_object('event', CASE WHEN i % 5000 = 0 THEN 'tag.added' ELSE 'post.edited' END), (100 + i)::text::xid8,
		       CASE WHEN i % 4000 = 1 THEN 'stripe' ELSE 'emit' END
		  FROM generate_series(1, 21000) AS i`); err != nil {
		t.Fatal(err)
	}
	count := func(cond string) int {
		var n int
		if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.outbox o WHERE `+cond).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	c := e.client(t)
	e.signIn(t, c, e.key)
	for _, tc := range []struct{ query, cond string }{
		{"/ui/events?event=tag.added", "metadata->>'event' = 'tag.added'"},
		{"/ui/events?source=stripe", "source = 'stripe'"},
		{"/ui/events?event=post.*&since=" + at(-300*time.Second), "metadata->>'event' LIKE 'post.%' AND created_at >= '" + at(-300*time.Second) + "'"},
		{"/ui/events?since=" + at(-20000*time.Second) + "&until=" + at(-19000*time.Second),
			"created_at >= '" + at(-20000*time.Second) + "' AND created_at < '" + at(-19000*time.Second) + "'"},
	} {
		pages := pagesOf(t, e, c, tc.query)
		got := ids(eventLink, pages)
		if want := count(tc.cond); len(got) != want {
			t.Errorf("%s: %d events over %d pages, want %d", tc.query, len(got), len(pages), want)
		}
	}
	// A relative time stays where it was on the first page while the operator pages.
	_, page, _ := get(t, c, e.srv.URL+"/ui/events?since=20000s")
	if m := olderLink.FindStringSubmatch(page); m == nil || !regexp.MustCompile(`since=\d{4}-\d\d-\d\dT`).MatchString(html.UnescapeString(m[1])) {
		t.Errorf("the next page of since=20000s is %v, want it at the first page's instant", m)
	}
	first := pagesOf(t, e, c, "/ui/events")[0]
	if n := len(eventLink.FindAllString(first, -1)); n != 50 {
		t.Errorf("the first page lists %d events, want 50", n)
	}
	var newest string
	if err := e.db.Pool.QueryRow(ctx, `SELECT "uuid" FROM relay.outbox ORDER BY transaction_id DESC LIMIT 1`).Scan(&newest); err != nil {
		t.Fatal(err)
	}
	if m := eventLink.FindStringSubmatch(first); m == nil || m[1] != newest {
		t.Errorf("the first event listed is %v, want the newest %s", m, newest)
	}
	code, _, resp := get(t, c, e.srv.URL+"/ui/events?id="+strings.ToUpper(newest))
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/events/"+newest {
		t.Errorf("search by id: %d %s", code, resp.Header.Get("Location"))
	}
	if code, _, _ := get(t, c, e.srv.URL+"/ui/events/00000000-0000-0000-0000-000000000000"); code != http.StatusNotFound {
		t.Errorf("an unknown event: %d", code)
	}
}

// The 24-hour figures come from the hourly rollup and the minutes after it; they are
// the same whether the rollup has run, is behind, or is up to date.
func TestDayFiguresAreTheSameWhereverTheRollupStands(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	hook := addHook(t, e, webhook.Input{Event: ptr("post.published"), TargetURL: ptr("https://a.example/"), Name: webhook.Value("Busy")})
	// 30 hours of minutes: 3 attempts each (2 succeeded), the durations of every tenth
	// minute in the slowest bucket.
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO relay.webhook_minutes (webhook_id, minute, attempts, succeeded, retried, failed, d2, d10, l3)
		SELECT $1, m, 3, 2, 1, 0, CASE WHEN extract(minute FROM m)::int % 10 = 0 THEN 0 ELSE 1 END,
		       CASE WHEN extract(minute FROM m)::int % 10 = 0 THEN 1 ELSE 0 END, 1
		  FROM generate_series(date_trunc('minute', now()) - interval '30 hours', date_trunc('minute', now()), interval '1 minute') AS m`, hook.ID); err != nil {
		t.Fatal(err)
	}
	var want int
	if err := e.db.Pool.QueryRow(ctx, `SELECT sum(attempts) FROM relay.webhook_minutes
		WHERE minute >= date_trunc('hour', (now() - interval '24 hours') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'`).Scan(&want); err != nil {
		t.Fatal(err)
	}
	c := e.client(t)
	e.signIn(t, c, e.key)
	figures := func() string {
		_, page, _ := get(t, c, e.srv.URL+"/ui/webhooks/"+hook.ID)
		m := regexp.MustCompile(`<span class="stat-value">([^<]+)</span><span class="stat-sub">(\d[\d,]*) attempts`).FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no figures on the page:\n%s", clip(page))
		}
		return m[1] + " of " + m[2]
	}
	before := figures()
	if wantS := "66.6% of " + commas(want); before != wantS {
		t.Errorf("without a rollup the page shows %s, want %s", before, wantS)
	}
	if _, err := store.RollUpHours(ctx, e.db.Pool, time.Now()); err != nil {
		t.Fatal(err)
	}
	if after := figures(); after != before {
		t.Errorf("after the rollup the page shows %s, before it %s", after, before)
	}
	// An old mark (the relays were stopped a while): the same again.
	if _, err := e.db.Pool.Exec(ctx, `UPDATE relay.webhook_hours_rolled SET rolled_until = rolled_until - interval '7 hours'`); err != nil {
		t.Fatal(err)
	}
	if late := figures(); late != before {
		t.Errorf("with the rollup behind the page shows %s, before it %s", late, before)
	}
	_, page, _ := get(t, c, e.srv.URL+"/ui/webhooks/"+hook.ID)
	mustContain(t, "the p95", html.UnescapeString(page), "> 10 s")
}

// commas writes n as the console does: thousands separated from 10,000 on.
func commas(n int) string {
	s := fmt.Sprint(n)
	if n < 10000 {
		return s
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// at is an instant relative to the test's start, as a filter takes it: fixed, so that the
// pages and the count agree however long the paging takes.
var testStart = time.Now()

func at(d time.Duration) string { return testStart.Add(d).UTC().Format(time.RFC3339) }
