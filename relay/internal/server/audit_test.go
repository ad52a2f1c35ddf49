package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/relay/internal/audit"
	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/relay/internal/relaytest"
	"github.com/relayhq/relay/testutil"
)

// auditRunRelay runs the pipeline on db until the test ends. Zero retries: a first
// failure is final, which is what a redelivery test starts from. The poll interval is
// long so that only NOTIFY can make a redelivery prompt.
func auditRunRelay(t *testing.T, db *testutil.DB) {
	t.Helper()
	cfg := relaytest.Config(t)
	cfg.PollInterval = 30 * time.Second
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{}}
	relaytest.Start(t, db.Pool, cfg)
}

func auditEmit(t testing.TB, db *testutil.DB, event, data string) string {
	t.Helper()
	var id string
	err := pgx.BeginFunc(context.Background(), db.Pool, func(tx pgx.Tx) error {
		var err error
		id, err = outbox.Emit(context.Background(), tx, event, []byte(data))
		return err
	})
	if err != nil {
		t.Fatalf("emit %s: %v", event, err)
	}
	return id
}

type eventBody struct {
	Event audit.Event `json:"event"`
}

// The whole operator story over HTTP: a webhook added through the Admin API, its
// first delivery failing for good, redelivered through the audit API, succeeding, and
// the event's history showing both attempts.
func TestRedeliveryThroughTheAuditAPISucceedsAndKeepsBothAttempts(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	var calls atomic.Int32
	rc := testutil.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("down for maintenance"))
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	code, body := a.do(t, "POST", browsePath, a.token(t), `{"webhooks":[{"event":"post.published","target_url":"`+rc.URL()+`/hook","secret":"s3cret"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("add webhook: %d %s", code, body)
	}
	auditRunRelay(t, a.db)
	eventID := auditEmit(t, a.db, "post.published", `{"post":{"current":{"id":"p1"},"previous":{}}}`)
	rc.WaitFor(t, 1, 10*time.Second)

	var deliveryID int64
	testutil.Eventually(t, 10*time.Second, func() bool {
		code, body := a.do(t, "GET", "/relay/v1/deliveries?status=failed", a.token(t), "")
		var page struct {
			Deliveries []audit.Delivery `json:"deliveries"`
		}
		if code != http.StatusOK || json.Unmarshal(body, &page) != nil || len(page.Deliveries) != 1 {
			return false
		}
		deliveryID = page.Deliveries[0].ID
		return true
	}, "the delivery did not fail")

	start := time.Now()
	code, body = a.do(t, "POST", fmt.Sprintf("/relay/v1/deliveries/%d/redeliver", deliveryID), a.token(t), "")
	if code != http.StatusAccepted {
		t.Fatalf("redeliver: %d %s", code, body)
	}
	var accepted struct {
		Delivery audit.Delivery `json:"delivery"`
	}
	// The response reads the delivery after the redelivery committed; a relay woken by its
	// NOTIFY may already have delivered it by then (seen: 4 ms).
	if err := json.Unmarshal(body, &accepted); err != nil {
		t.Errorf("redeliver response %s: %v", body, err)
	} else {
		del := accepted.Delivery
		queued := del.Status == "pending" && del.Attempts == 1
		alreadyDone := del.Status == "succeeded" && del.Attempts == 2
		if !queued && !alreadyDone {
			t.Errorf("redeliver response %s: want the delivery pending again (or already redelivered)", body)
		}
	}
	reqs := rc.WaitFor(t, 2, 10*time.Second)
	// The relay polls every 30 s here: only the NOTIFY makes this prompt.
	t.Logf("redelivery reached the receiver %v after the API call", reqs[1].At.Sub(start).Round(time.Millisecond))
	if lag := reqs[1].At.Sub(start); lag > 5*time.Second {
		t.Errorf("redelivery took %v; NOTIFY should wake the relay at once", lag)
	}
	if reqs[0].Header.Get("webhook-id") != eventID || reqs[1].Header.Get("webhook-id") != eventID {
		t.Errorf("webhook-id %q then %q, want the event id %s both times", reqs[0].Header.Get("webhook-id"), reqs[1].Header.Get("webhook-id"), eventID)
	}

	var e audit.Event
	testutil.Eventually(t, 10*time.Second, func() bool {
		code, body := a.do(t, "GET", "/relay/v1/events/"+eventID, a.token(t), "")
		var eb eventBody
		if code != http.StatusOK || json.Unmarshal(body, &eb) != nil || len(eb.Event.Deliveries) != 1 {
			return false
		}
		e = eb.Event
		return e.Deliveries[0].Status == "succeeded"
	}, "redelivered delivery did not succeed")
	d := e.Deliveries[0]
	if d.Attempts != 2 || len(d.AttemptLog) != 2 {
		t.Fatalf("delivery after redelivery: %d attempts, log %+v", d.Attempts, d.AttemptLog)
	}
	first, second := d.AttemptLog[0], d.AttemptLog[1]
	if first.Attempt != 1 || first.StatusCode == nil || *first.StatusCode != 503 || first.ResponseExcerpt == nil || *first.ResponseExcerpt != "down for maintenance" {
		t.Errorf("first attempt rewritten or wrong: %+v", first)
	}
	if second.Attempt != 2 || second.StatusCode == nil || *second.StatusCode != 200 || !second.StartedAt.After(first.StartedAt) {
		t.Errorf("second attempt %+v", second)
	}
	if d.DeliveredAt == nil || e.Event != "post.published" || string(e.Data) != `{"post":{"current":{"id":"p1"},"previous":{}}}` {
		t.Errorf("event %s %s delivered_at %v", e.Event, e.Data, d.DeliveredAt)
	}
}

func TestAuditAPIListsFiltersAndPages(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	ctx := context.Background()
	// Events and deliveries written directly: the audit API reads the tables, whoever
	// filled them.
	var ids []string
	for i := range 5 {
		ids = append(ids, auditEmit(t, a.db, "post.published", fmt.Sprintf(`{"n":%d}`, i)))
	}
	tagID := auditEmit(t, a.db, "tag.added", `{}`)
	var wh string
	// The key's own (its actions, such as redeliver, reach only its webhooks).
	if err := a.db.Pool.QueryRow(ctx, `INSERT INTO relay.webhooks (event, target_url, integration_id) VALUES ('post.*', 'https://example.com/x', $1) RETURNING id`,
		a.integration).Scan(&wh); err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		status := "succeeded"
		if i%2 == 1 {
			status = "failed"
		}
		if _, err := a.db.Pool.Exec(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts) VALUES ($1, $2, $3, 1)`, id, wh, status); err != nil {
			t.Fatal(err)
		}
	}

	get := func(path string, q url.Values, v any) int {
		t.Helper()
		p := path
		if len(q) > 0 {
			p += "?" + q.Encode()
		}
		code, body := a.do(t, "GET", p, a.token(t), "")
		if code == http.StatusOK {
			if err := json.Unmarshal(body, v); err != nil {
				t.Fatalf("GET %s: %v (%s)", p, err, body)
			}
		}
		return code
	}
	type eventsPage struct {
		Events []audit.Event `json:"events"`
		Meta   struct {
			NextCursor *string `json:"next_cursor"`
		} `json:"meta"`
	}

	// Paging through everything, two at a time, newest first.
	var seen []string
	cursor := ""
	for range 10 {
		q := url.Values{"limit": {"2"}}
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		var p eventsPage
		if code := get("/relay/v1/events", q, &p); code != http.StatusOK {
			t.Fatalf("page: %d", code)
		}
		for _, e := range p.Events {
			seen = append(seen, e.ID)
		}
		if p.Meta.NextCursor == nil {
			break
		}
		cursor = *p.Meta.NextCursor
	}
	want := append([]string{tagID}, reverse(ids)...)
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("paged events %v, want newest first %v", seen, want)
	}

	var p eventsPage
	get("/relay/v1/events", url.Values{"event": {"tag.*"}}, &p)
	if len(p.Events) != 1 || p.Events[0].ID != tagID || len(p.Events[0].DeliveryCounts) != 0 {
		t.Errorf("event=tag.*: %+v", p.Events)
	}
	get("/relay/v1/events", url.Values{"status": {"failed"}, "webhook": {wh}}, &p)
	if len(p.Events) != 2 || p.Events[0].DeliveryCounts["failed"] != 1 {
		t.Errorf("status=failed: %+v", p.Events)
	}
	get("/relay/v1/events", url.Values{"since": {"1h"}, "until": {time.Now().Add(time.Minute).Format(time.RFC3339)}}, &p)
	if len(p.Events) != 6 {
		t.Errorf("since=1h: %d events", len(p.Events))
	}
	get("/relay/v1/events", url.Values{"until": {"1h"}}, &p)
	if len(p.Events) != 0 {
		t.Errorf("until=1h ago: %d events", len(p.Events))
	}

	var dp struct {
		Deliveries []audit.Delivery `json:"deliveries"`
	}
	get("/relay/v1/deliveries", url.Values{"status": {"failed"}, "webhook": {wh}}, &dp)
	if len(dp.Deliveries) != 2 || dp.Deliveries[0].Event != "post.published" || dp.Deliveries[0].TargetURL == nil {
		t.Errorf("deliveries status=failed: %+v", dp.Deliveries)
	}
	get("/relay/v1/deliveries", url.Values{"event_id": {ids[0]}}, &dp)
	if len(dp.Deliveries) != 1 || dp.Deliveries[0].EventID != ids[0] {
		t.Errorf("deliveries event_id: %+v", dp.Deliveries)
	}

	for _, c := range []struct {
		path string
		code int
		typ  string
	}{
		{"/relay/v1/events?status=broken", 422, "ValidationError"},
		{"/relay/v1/events?limit=0", 422, "ValidationError"},
		{"/relay/v1/events?limit=5000", 422, "ValidationError"},
		{"/relay/v1/events?since=yesterday", 422, "ValidationError"},
		{"/relay/v1/events?cursor=bm9wZQ", 422, "ValidationError"},
		{"/relay/v1/events?statuss=failed", 422, "ValidationError"},
		{"/relay/v1/deliveries?event_id=42", 422, "ValidationError"},
		{"/relay/v1/events/not-a-uuid", 422, "ValidationError"},
		{"/relay/v1/events/9b2c1f9e-0000-4000-8000-000000000000", 404, "NotFoundError"},
		{"/relay/v1/deliveries/999999", 404, "NotFoundError"},
	} {
		code, body := a.do(t, "GET", c.path, a.token(t), "")
		wantError(t, c.path, code, body, c.code, c.typ)
	}
	code, body := a.do(t, "POST", "/relay/v1/deliveries/999999/redeliver", a.token(t), "")
	wantError(t, "redeliver unknown", code, body, 404, "NotFoundError")
	// A disabled webhook's delivery is not redelivered: enable it first.
	if _, err := a.db.Pool.Exec(ctx, `UPDATE relay.webhooks SET status = 'disabled' WHERE id = $1`, wh); err != nil {
		t.Fatal(err)
	}
	code, body = a.do(t, "POST", fmt.Sprintf("/relay/v1/deliveries/%d/redeliver", dp.Deliveries[0].ID), a.token(t), "")
	wantError(t, "redeliver to a disabled webhook", code, body, 409, "ConflictError")
	// A deleted one's is no one's: there is nowhere to send it, and no key owns it.
	if _, err := a.db.Pool.Exec(ctx, `DELETE FROM relay.webhooks WHERE id = $1`, wh); err != nil {
		t.Fatal(err)
	}
	code, body = a.do(t, "POST", fmt.Sprintf("/relay/v1/deliveries/%d/redeliver", dp.Deliveries[0].ID), a.token(t), "")
	wantError(t, "redeliver to a deleted webhook", code, body, 404, "NotFoundError")
}

func reverse(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// The audit API's actions reach only the key's own webhooks: another integration's key
// (or any key, for the operator's webhooks) can read a delivery but neither redeliver
// nor skip it, nor redeliver its event there; each is answered as not found, and
// nothing changes.
func TestAuditActionsTouchOnlyTheKeysOwnWebhooks(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	ctx := context.Background()
	_, otherKey, err := a.keys.Create(ctx, "another client")
	if err != nil {
		t.Fatal(err)
	}
	other := ghostToken(t, otherKey, time.Now(), "/admin/")
	event := auditEmit(t, a.db, "post.published", `{}`)
	var mine, operators int64
	for _, c := range []struct {
		integration any
		id          *int64
	}{{a.integration, &mine}, {nil, &operators}} {
		if err := a.db.Pool.QueryRow(ctx, `WITH w AS (INSERT INTO relay.webhooks (event, target_url, integration_id, ordered)
			VALUES ('post.published', 'https://example.com/' || gen_random_uuid(), $1, true) RETURNING id)
			INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts) SELECT $2, id, 'failed', 1 FROM w RETURNING id`,
			c.integration, event).Scan(c.id); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name, token, path string
	}{
		{"another key redelivers mine", other, fmt.Sprintf("/relay/v1/deliveries/%d/redeliver", mine)},
		{"another key skips mine", other, fmt.Sprintf("/relay/v1/deliveries/%d/skip", mine)},
		{"a key redelivers the operator's", a.token(t), fmt.Sprintf("/relay/v1/deliveries/%d/redeliver", operators)},
		{"a key skips the operator's", a.token(t), fmt.Sprintf("/relay/v1/deliveries/%d/skip", operators)},
	} {
		code, body := a.do(t, "POST", c.path, c.token, "")
		wantError(t, c.name, code, body, 404, "NotFoundError")
	}
	code, body := a.do(t, "POST", "/relay/v1/events/"+event+"/redeliver", other, "")
	if code != http.StatusAccepted || !strings.Contains(string(body), `"redelivered":[]`) {
		t.Errorf("another key redelivers the event: %d %s; want nothing redelivered", code, body)
	}
	var failed int
	if err := a.db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.deliveries WHERE status = 'failed'`).Scan(&failed); err != nil || failed != 2 {
		t.Fatalf("%d failed deliveries left (%v), want both untouched", failed, err)
	}
	// The owner may.
	if code, body := a.do(t, "POST", fmt.Sprintf("/relay/v1/deliveries/%d/skip", mine), a.token(t), ""); code != http.StatusOK {
		t.Errorf("the owner skips: %d %s", code, body)
	}
	code, body = a.do(t, "POST", "/relay/v1/events/"+event+"/redeliver", a.token(t), "")
	if code != http.StatusAccepted || !strings.Contains(string(body), fmt.Sprintf(`"redelivered":[%d]`, mine)) {
		t.Errorf("the owner redelivers the event: %d %s; want its delivery only", code, body)
	}
}
