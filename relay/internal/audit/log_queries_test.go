package audit_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/testutil"
)

// logHistory is a small CMS history with known answers: two posts, a member and a tag,
// one transaction with two events, deliveries in every state, and a webhook created
// after some of the events it matches.
type logHistory struct {
	db                       *testutil.DB
	t0                       time.Time
	allPosts, publishedOnly  string // webhooks 'post.*' (from the start) and 'post.published' (from t0+2d)
	postA, postB             string // Ghost post ids
	added, published, edited string // post A's event ids
	bAdded, deleted          string
}

func newLogHistory(t *testing.T) *logHistory {
	t.Helper()
	h := &logHistory{db: testutil.NewDB(t), t0: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC),
		postA: "65f1a0c2e4b0a1b2c3d4e5f6", postB: "65f1a0c2e4b0a1b2c3d4e5f7"}
	h.allPosts = h.webhook(t, "post.*", h.t0.Add(-24*time.Hour))
	h.publishedOnly = h.webhook(t, "post.published", h.t0.Add(48*time.Hour))

	post := func(id, title string) string {
		return fmt.Sprintf(`{"post":{"current":{"id":%q,"title":%q,"status":"draft"},"previous":{}}}`, id, title)
	}
	h.added = h.emit(t, h.t0.Add(time.Hour), event{"post.added", post(h.postA, "Hello")})[0]
	h.published = h.emit(t, h.t0.Add(2*time.Hour), event{"post.published",
		fmt.Sprintf(`{"post":{"current":{"id":%q,"status":"published"},"previous":{"status":"draft"}}}`, h.postA)})[0]
	h.emit(t, h.t0.Add(5*time.Hour), event{"member.added", `{"member":{"current":{"id":"m1","email":"ann@example.com"},"previous":{}}}`})
	h.emit(t, h.t0.Add(6*time.Hour), event{"tag.added", `{"tag":{"current":{"id":"t1","name":"News"},"previous":{}}}`})
	// One transaction, two events: commit order is the offset's within it.
	ids := h.emit(t, h.t0.Add(72*time.Hour),
		event{"post.edited", fmt.Sprintf(`{"post":{"current":{"id":%q,"title":"Hello, world"},"previous":{"title":"Hello"}}}`, h.postA)},
		event{"post.added", post(h.postB, "Second")})
	h.edited, h.bAdded = ids[0], ids[1]
	// A deleted post has only previous.
	h.deleted = h.emit(t, h.t0.Add(96*time.Hour), event{"post.deleted", fmt.Sprintf(`{"post":{"current":{},"previous":{"id":%q}}}`, h.postA)})[0]

	// post.* got A's added at the second attempt, gave up on published after three,
	// is still retrying edited after a timeout, and delivered B's added and A's deleted at once;
	// post.published, created after A's published, has no delivery of it.
	h.delivery(t, h.added, h.allPosts, "succeeded", 500, 200)
	h.delivery(t, h.published, h.allPosts, "failed", 500, 502, 503)
	h.delivery(t, h.edited, h.allPosts, "pending", 0)
	h.delivery(t, h.bAdded, h.allPosts, "succeeded", 200)
	h.delivery(t, h.deleted, h.allPosts, "succeeded", 204)
	return h
}

type event struct{ name, data string }

func (h *logHistory) webhook(t *testing.T, pattern string, created time.Time) string {
	t.Helper()
	var id string
	if err := h.db.Pool.QueryRow(context.Background(), `INSERT INTO relay.webhooks (event, target_url, created_at)
		VALUES ($1::text, 'https://hooks.example.com/' || $1::text, $2) RETURNING id`, pattern, created).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// emit writes events in one transaction, as a CMS does, dated at.
func (h *logHistory) emit(t *testing.T, at time.Time, events ...event) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	err := pgx.BeginFunc(ctx, h.db.Pool, func(tx pgx.Tx) error {
		for _, e := range events {
			var id string
			if err := tx.QueryRow(ctx, `SELECT relay.emit($1, $2::text)::text`, e.name, e.data).Scan(&id); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE relay.outbox SET created_at = $2 WHERE "uuid" = $1`, id, at); err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// delivery records a delivery of event to webhook in status with one attempt per
// status code (0: no response).
func (h *logHistory) delivery(t *testing.T, event, webhook, status string, codes ...int) {
	t.Helper()
	if _, err := h.db.Pool.Exec(context.Background(), `
		WITH d AS (
			INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, created_at)
			SELECT "uuid"::uuid, $2, $3, cardinality($4::int[]), created_at FROM relay.outbox WHERE "uuid" = $1
			RETURNING id, created_at)
		INSERT INTO relay.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error)
		SELECT d.id, c.n, d.created_at + c.n * interval '1 minute', 12, nullif(c.code, 0),
		       CASE WHEN c.code = 0 THEN 'timeout after 10s' WHEN c.code NOT BETWEEN 200 AND 299 THEN 'HTTP ' || c.code END
		  FROM d, unnest($4::int[]) WITH ORDINALITY AS c(code, n)`, event, webhook, status, codes); err != nil {
		t.Fatal(err)
	}
}

// result is what a query returned: its column names and rows.
type result struct {
	t    *testing.T
	cols []string
	rows [][]any
}

// query runs the README's query titled title with the psql variables vars.
func (h *logHistory) query(t *testing.T, title string, vars map[string]any) result {
	t.Helper()
	sql, args, err := testutil.PsqlVars(testutil.READMEQuery(t, "## Auditing", title), vars)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := h.db.Pool.Query(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", title, err, sql)
	}
	res := result{t: t}
	for _, f := range rows.FieldDescriptions() {
		res.cols = append(res.cols, f.Name)
	}
	if res.rows, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) ([]any, error) { return r.Values() }); err != nil {
		t.Fatalf("%s: %v", title, err)
	}
	return res
}

// col returns the values of the named column as text ("" for NULL, uuids as written).
func (r result) col(name string) []string {
	r.t.Helper()
	i := slices.Index(r.cols, name)
	if i < 0 {
		r.t.Fatalf("no column %q in %v", name, r.cols)
	}
	var out []string
	for _, row := range r.rows {
		switch v := row[i].(type) {
		case nil:
			out = append(out, "")
		case [16]byte:
			out = append(out, uuid.UUID(v).String())
		default:
			out = append(out, fmt.Sprint(v))
		}
	}
	return out
}

// The README's "everything that happened to one post" lists the post's events in
// commit order (the deleted one found by its previous id, the other post's event of the
// same transaction left out), each with every delivery and attempt.
func TestREADMEQueryEverythingThatHappenedToAPost(t *testing.T) {
	t.Parallel()
	h := newLogHistory(t)
	const title = "Everything that happened to one post"
	vars := map[string]any{"post_id": h.postA}
	res := h.query(t, title, vars)
	wantEvents := []string{"post.added", "post.added", "post.published", "post.published", "post.published", "post.edited", "post.deleted"}
	if got := res.col("event"); !slices.Equal(got, wantEvents) {
		t.Errorf("events %v, want %v", got, wantEvents)
	}
	if got, want := res.col("attempt"), []string{"1", "2", "1", "2", "3", "1", "1"}; !slices.Equal(got, want) {
		t.Errorf("attempts %v, want %v", got, want)
	}
	if got, want := res.col("status_code"), []string{"500", "200", "500", "502", "503", "", "204"}; !slices.Equal(got, want) {
		t.Errorf("status codes %v, want %v", got, want)
	}
	if got := res.col("status"); got[0] != "succeeded" || got[2] != "failed" || got[5] != "pending" {
		t.Errorf("delivery states %v", got)
	}
	if ids := res.col("event_id"); slices.Contains(ids, h.bAdded) || ids[len(ids)-1] != h.deleted {
		t.Errorf("event ids %v: the other post's event listed, or the deletion missing", ids)
	}
}

// The README's "every event one webhook missed" finds, in the window, the matching
// events without a succeeded delivery to the webhook: given up, still retrying, or
// never delivered (emitted before it existed); nothing it got, nothing it does not
// match, nothing outside the window.
func TestREADMEQueryEveryEventAWebhookMissed(t *testing.T) {
	t.Parallel()
	h := newLogHistory(t)
	const title = "Every event one webhook missed"
	for _, tc := range []struct {
		name         string
		webhook      string
		since, until time.Time
		events       []string
		delivery     []string
	}{
		{"post.* over the whole history", h.allPosts, h.t0, h.t0.Add(7 * 24 * time.Hour),
			[]string{h.published, h.edited}, []string{"failed", "pending"}},
		{"post.* before the edit", h.allPosts, h.t0, h.t0.Add(72 * time.Hour),
			[]string{h.published}, []string{"failed"}},
		{"post.published, created after the post was published", h.publishedOnly, h.t0, h.t0.Add(7 * 24 * time.Hour),
			[]string{h.published}, []string{"none"}},
		{"post.* after everything", h.allPosts, h.t0.Add(5 * 24 * time.Hour), h.t0.Add(7 * 24 * time.Hour), nil, nil},
	} {
		vars := map[string]any{"webhook_id": tc.webhook, "since": tc.since, "until": tc.until}
		res := h.query(t, title, vars)
		if got := res.col("event_id"); !slices.Equal(got, tc.events) {
			t.Errorf("%s: missed %v, want %v", tc.name, got, tc.events)
		}
		if got := res.col("delivery"); !slices.Equal(got, tc.delivery) {
			t.Errorf("%s: deliveries %v, want %v", tc.name, got, tc.delivery)
		}
	}
}

// The README's "what changed between two dates" has one row per resource changed in
// the window, with its events in commit order; "events between two dates by type"
// counts the same window by event.
func TestREADMEQueryWhatChangedBetweenTwoDates(t *testing.T) {
	t.Parallel()
	h := newLogHistory(t)
	vars := map[string]any{"since": h.t0, "until": h.t0.Add(24 * time.Hour)}
	const changed = "What changed between two dates"
	res := h.query(t, changed, vars)
	var got []string
	for i := range res.rows {
		got = append(got, strings.Join([]string{res.col("resource")[i], res.col("id")[i],
			res.col("events")[i], res.col("what")[i]}, " "))
	}
	want := []string{"member m1 1 [member.added]", "post " + h.postA + " 2 [post.added post.published]", "tag t1 1 [tag.added]"}
	if !slices.Equal(got, want) {
		t.Errorf("the first day changed\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	vars["until"] = h.t0.Add(7 * 24 * time.Hour)
	res = h.query(t, changed, vars)
	if what := res.col("what"); len(res.rows) != 4 || what[1] != "[post.added post.published post.edited post.deleted]" {
		t.Errorf("the week changed %v", res.rows)
	}

	const byType = "Events between two dates by type"
	res = h.query(t, byType, vars)
	counts := map[string]string{}
	for i, e := range res.col("event") {
		counts[e] = res.col("events")[i]
	}
	if want := map[string]string{"post.added": "2", "post.published": "1", "post.edited": "1", "post.deleted": "1", "member.added": "1", "tag.added": "1"}; fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("by type %v, want %v", counts, want)
	}
	if first := res.col("event")[0]; first != "post.added" {
		t.Errorf("the most frequent type comes first: got %s", first)
	}
}

// The post's history is read through the index on the event key (00012_kept_log), not
// by parsing every payload: the query's e.key must stay the indexed expression.
func TestREADMEPostHistoryIsReadThroughTheKeyIndex(t *testing.T) {
	t.Parallel()
	h := newLogHistory(t)
	sql, args, err := testutil.PsqlVars(testutil.READMEQuery(t, "## Auditing", "Everything that happened to one post"),
		map[string]any{"post_id": h.postA})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var plan string
	err = pgx.BeginFunc(ctx, h.db.Pool, func(tx pgx.Tx) error {
		// A table this small is cheaper to scan; forbidding that shows whether the
		// index can serve the query at all.
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "EXPLAIN "+sql, args...)
		if err != nil {
			return err
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		plan = strings.Join(lines, "\n")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "outbox_key_idx") {
		t.Errorf("the post's history is not read through outbox_key_idx:\n%s", plan)
	}
}
