package console_test

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/relayhq/relay/relay/internal/webhook"
)

// emitSQL emits an event with relay.emit, as a CMS does, in a statement of its own.
func emitSQL(t testing.TB, e *env, event, data string) string {
	t.Helper()
	var id string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT relay.emit($1, $2::text)::text`, event, data).Scan(&id); err != nil {
		t.Fatalf("relay.emit %s: %v", event, err)
	}
	return id
}

// tick clicks a checkbox or radio button (no page load follows) and checks that it is
// checked.
func tick(t testing.TB, ctx context.Context, sel string) {
	t.Helper()
	sctx, cancel := step(ctx)
	defer cancel()
	if err := chromedp.Do(sctx, chromedp.Click(chromedp.CSS(sel))); err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	checked, err := chromedp.Run(sctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q).checked`, sel)))
	if err != nil || !checked {
		t.Fatalf("%s is not checked after a click (%v)", sel, err)
	}
}

func present(t testing.TB, ctx context.Context, sel string) bool {
	t.Helper()
	sctx, cancel := step(ctx)
	defer cancel()
	found, err := chromedp.Run(sctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.querySelector(%q) !== null`, sel)))
	if err != nil {
		t.Fatalf("look for %s: %v", sel, err)
	}
	return found
}

// An operator's story with an ordered webhook, in a real browser against a real relay:
// add the webhook with "Deliver in order" ticked; emit two events of one post while its
// receiver fails: the first fails and the second is held behind it, as the deliveries
// list, both delivery pages, the webhooks list and the webhook's page say; Skip, asked
// first with what it does, lets the second go, and the receiver gets it; the skip is in
// the webhook's history and 'skipped' is a status to filter by.
func TestOrderedWebhookSkipInTheBrowser(t *testing.T) {
	e := newEnv(t)
	rs := newReceiverSwitch(t)
	rs.failing.Store(true)
	startRelay(t, e)
	ctx := tab(t, 4*time.Minute)
	base := e.srv.URL
	open(t, ctx, base+"/ui/sign-in")
	fill(t, ctx, "input[name=key]", e.key)
	click(t, ctx, "form.form button[type=submit]")

	// Add the webhook in the form, ordered.
	open(t, ctx, base+"/ui/webhooks/new")
	choose(t, ctx, "#event", "post.*")
	fill(t, ctx, "#target_url", rs.rc.URL()+"/search")
	fill(t, ctx, "#name", "Search index")
	tick(t, ctx, "#ordered")
	mustContain(t, "the ordered checkbox", text(t, ctx, ".field:has(#ordered)"), "Deliver in order per post/member (ordered)",
		"holds back the later ones of its key until you redeliver or skip it")
	if code := click(t, ctx, "form.form button[type=submit]"); code != http.StatusCreated {
		t.Fatalf("adding the webhook answered %d: %s", code, pageText(ctx))
	}
	follow(t, ctx, "section.secret a.btn.primary")
	var hookID string
	var ordered bool
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT id, ordered FROM relay.webhooks`).Scan(&hookID, &ordered); err != nil || !ordered {
		t.Fatalf("the webhook added with the box ticked: ordered=%v (%v)", ordered, err)
	}
	mustContain(t, "the ordered webhook's page", text(t, ctx, "main"), "Ordered: the events of each post, page, tag or member go one at a time")

	// Two events of one post; the receiver fails the first (no retries here: at once
	// for good), which holds the second.
	const post = "6651b1f2a3c4d5e6f7a8b9c0"
	firstBody := `{"post":{"current":{"id":"` + post + `","title":"Hello","status":"published"},"previous":{"status":"draft"}}}`
	secondBody := `{"post":{"current":{"id":"` + post + `","title":"Hello, world","status":"published"},"previous":{"title":"Hello"}}}`
	firstEvent := emitSQL(t, e, "post.published", firstBody)
	secondEvent := emitSQL(t, e, "post.edited", secondBody)
	first, second := deliveryOf(t, e, firstEvent), deliveryOf(t, e, secondEvent)
	waitForStatus(t, e, first, "failed")

	open(t, ctx, base+"/ui/deliveries")
	reloadUntilPresent(t, ctx, "main table .badge.bad", 20*time.Second)
	rows := text(t, ctx, "main table tbody")
	mustContain(t, "the deliveries list", rows, "failed", "pending", "held behind another delivery of key "+post[:23])
	if got := text(t, ctx, fmt.Sprintf("main table tbody tr:has(a[href='/ui/deliveries/%d'])", second)); !strings.Contains(got, "held behind") {
		t.Errorf("the second delivery's row reads %q, want it held", got)
	}
	open(t, ctx, base+"/ui/webhooks")
	mustContain(t, "the webhooks list", text(t, ctx, "main table"), "Search index", "ordered", "1 held", "1 key blocked")
	open(t, ctx, base+"/ui/webhooks/"+hookID)
	mustContain(t, "the webhook's held figure", text(t, ctx, "#held .stat-value"), "1")
	mustContain(t, "the webhook's held figure", text(t, ctx, "#held .stat-sub"), "behind 1 blocked key")
	mustContain(t, "the webhook's warning", text(t, ctx, "#blocked"), "1 key is blocked", "(1 held now)", "redeliver or skip them")

	// The held delivery says what it waits for, and leads there.
	open(t, ctx, fmt.Sprintf("%s/ui/deliveries/%d", base, second))
	mustContain(t, "the held delivery", text(t, ctx, "main h1"), "pending", "held")
	mustContain(t, "what it waits for", text(t, ctx, "#held"), fmt.Sprintf("Held behind delivery #%d (failed", first), post)
	mustContain(t, "its figures", text(t, ctx, "section.stats"), "when its key is let go", post, "one at a time per key")
	if present(t, ctx, "#skip") {
		t.Error("a held delivery offers Skip")
	}
	shoot(t, ctx, "delivery-held")
	follow(t, ctx, "#held a")

	// The failed one offers Redeliver and Skip, and says what it holds back.
	if loc := location(t, ctx); loc != fmt.Sprintf("%s/ui/deliveries/%d", base, first) {
		t.Fatalf("the held delivery's link leads to %s", loc)
	}
	mustContain(t, "the failed delivery", text(t, ctx, "#holds"), "holds back the later deliveries of key "+post, "(1 held now)")
	if !present(t, ctx, "form[action$='/redeliver'] button") {
		t.Error("the failed delivery of an ordered webhook lost Redeliver")
	}
	follow(t, ctx, "#skip")
	mustContain(t, "the skip confirmation", text(t, ctx, "main"), "Skip this delivery?", "It is marked skipped",
		"its receiver does not get this event", "you can still redeliver it later",
		"The next delivery of key "+post+" goes at once (1 held behind this one)")
	shoot(t, ctx, "delivery-skip")

	rs.failing.Store(false)
	if code := click(t, ctx, "form[action$='/skip'] button"); code != http.StatusOK {
		t.Errorf("skip led to a %d", code)
	}
	if loc := location(t, ctx); loc != fmt.Sprintf("%s/ui/deliveries/%d?done=skipped", base, first) {
		t.Errorf("after Skip the browser is at %s", loc)
	}
	mustContain(t, "after Skip", text(t, ctx, "main"), "Delivery skipped: the next delivery of its key is due now.", "passed over by an operator")
	mustContain(t, "the skipped delivery's status", text(t, ctx, "main h1 .badge.muted"), "skipped")

	// The second goes, and reaches the receiver.
	got := rs.rc.WaitFor(t, 2, 20*time.Second)
	if got[1].Header.Get("webhook-id") != secondEvent || !bytes.Equal(got[1].Body, []byte(secondBody)) {
		t.Errorf("after the skip the receiver got %s (%s), want the second event", got[1].Body, got[1].Header.Get("webhook-id"))
	}
	open(t, ctx, fmt.Sprintf("%s/ui/deliveries/%d", base, second))
	reloadUntil(t, ctx, "main h1", "succeeded", 20*time.Second)

	// Recorded, and shown in the webhook's history; 'skipped' is a status to filter by.
	ch := changes(t, e)
	if len(ch) != 2 || ch[1].Action != "skipped a delivery" || deref(ch[1].WebhookID) != hookID || ch[1].KeyID != e.keyID ||
		!strings.Contains(ch[1].Detail, fmt.Sprintf("delivery %d (failed after 1 attempt) of key %s", first, post)) ||
		!strings.Contains(ch[0].Detail, ", ordered") {
		t.Errorf("recorded %+v", ch)
	}
	open(t, ctx, base+"/ui/webhooks/"+hookID)
	mustContain(t, "the webhook's history", text(t, ctx, "ol.history"), "Ada Lovelace", "skipped a delivery", fmt.Sprintf("#%d", first), "of key "+post)
	if present(t, ctx, "#blocked") {
		t.Errorf("the webhook still says a key is blocked: %s", text(t, ctx, "#blocked"))
	}
	open(t, ctx, base+"/ui/deliveries")
	choose(t, ctx, "select[name=status]", "skipped")
	click(t, ctx, "form.filters button[type=submit]")
	if n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("main table tbody tr").length`)); err != nil || n != 1 {
		t.Fatalf("deliveries filtered by skipped: %d rows (%v), want 1", n, err)
	}
	mustContain(t, "the skipped row", text(t, ctx, "main table tbody tr .badge.muted"), "skipped")
	mustContain(t, "the skipped row", text(t, ctx, "main table tbody tr"), fmt.Sprintf("#%d", first))
}

// The ordered checkbox saves through the webhook rules (webhook.Store, as the CLI and
// the audit API), shows the webhook's state when editing, and each change of it is
// recorded; turning it off lets the held deliveries go, and the record counts them.
func TestOrderedCheckboxIsSavedAndRecorded(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.client(t)
	csrf := e.signIn(t, c, e.key)
	base := e.srv.URL

	_, form, _ := get(t, c, base+"/ui/webhooks/new")
	if !strings.Contains(form, `name="ordered" value="yes" aria-describedby`) {
		t.Fatalf("the add form has no unticked ordered checkbox:\n%s", clip(form))
	}
	code, _, resp := post(t, c, base+"/ui/webhooks", url.Values{"csrf": {csrf}, "event": {"post.*"},
		"target_url": {"https://hooks.example.com/ordered"}, "secret_mode": {"none"}, "ordered": {"yes"}})
	if code != http.StatusSeeOther {
		t.Fatalf("add: %d", code)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(resp.Header.Get("Location"), "/ui/webhooks/"), "?done=added")
	wh, err := webhook.Store{Pool: e.db.Pool}.Get(ctx, id)
	if err != nil || !wh.Ordered {
		t.Fatalf("added with the box ticked: %+v (%v)", wh, err)
	}
	_, form, _ = get(t, c, base+"/ui/webhooks/"+id+"/edit")
	if !strings.Contains(form, `name="ordered" value="yes" checked`) {
		t.Errorf("the edit form of an ordered webhook has the box unticked:\n%s", clip(form))
	}

	// A held delivery (pending, no next attempt) of a key whose first failed.
	eventA := emit(t, e.db, "post.published", `{"post":{"current":{"id":"p1"}}}`)
	eventB := emit(t, e.db, "post.edited", `{"post":{"current":{"id":"p1"}}}`)
	var held int64
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, ordering_key)
		VALUES ($1, $2, 'failed', 1, 'p1')`, eventA, id); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Pool.QueryRow(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, next_attempt_at, ordering_key)
		VALUES ($1, $2, NULL, 'p1') RETURNING id`, eventB, id).Scan(&held); err != nil {
		t.Fatal(err)
	}
	_, list, _ := get(t, c, base+"/ui/webhooks")
	mustContain(t, "the webhooks list", html.UnescapeString(list), ">ordered</span>", "1 held", "1 key blocked")
	_, eventPage, _ := get(t, c, base+"/ui/events/"+eventB)
	mustContain(t, "the held event's page", eventPage, `<span class="badge">held</span>`, `title="p1">p1</code>`, "held behind another delivery of its key")
	_, overview, _ := get(t, c, base+"/ui/")
	mustContain(t, "the overview", overview, "1 held behind their key", "1 key blocked")

	// Saving the form unchanged changes nothing and records nothing.
	same := url.Values{"csrf": {csrf}, "event": {"post.*"}, "target_url": {"https://hooks.example.com/ordered"}, "secret_mode": {"keep"}, "ordered": {"yes"}}
	if code, _, _ := post(t, c, base+"/ui/webhooks/"+id, same); code != http.StatusSeeOther {
		t.Fatalf("edit: %d", code)
	}
	// Unticked: no longer ordered, and the held delivery goes.
	off := url.Values{"csrf": {csrf}, "event": {"post.*"}, "target_url": {"https://hooks.example.com/ordered"}, "secret_mode": {"keep"}}
	if code, _, _ := post(t, c, base+"/ui/webhooks/"+id, off); code != http.StatusSeeOther {
		t.Fatalf("edit: %d", code)
	}
	var due bool
	if err := e.db.Pool.QueryRow(ctx, `SELECT next_attempt_at IS NOT NULL FROM relay.deliveries WHERE id = $1`, held).Scan(&due); err != nil || !due {
		t.Errorf("the held delivery after turning ordering off: due=%v (%v)", due, err)
	}
	if wh, _ = (webhook.Store{Pool: e.db.Pool}).Get(ctx, id); wh.Ordered {
		t.Error("still ordered after unticking the box")
	}
	if code, _, _ := post(t, c, base+"/ui/webhooks/"+id, same); code != http.StatusSeeOther {
		t.Fatalf("edit: %d", code)
	}
	if wh, _ = (webhook.Store{Pool: e.db.Pool}).Get(ctx, id); !wh.Ordered {
		t.Error("not ordered after ticking the box again")
	}
	got := changes(t, e)
	want := []struct{ action, detail string }{
		{"added the webhook", "event post.*, URL https://hooks.example.com/ordered, no secret, ordered"},
		{"edited the webhook", "no longer ordered: 1 held delivery let go"},
		{"edited the webhook", "made ordered: its deliveries created from now on go one at a time per key"},
	}
	if len(got) != len(want) {
		t.Fatalf("recorded %+v, want %v", got, want)
	}
	for i, w := range want {
		if got[i].Action != w.action || got[i].Detail != w.detail {
			t.Errorf("change %d: %q %q, want %q %q", i, got[i].Action, got[i].Detail, w.action, w.detail)
		}
	}
}

// Skip is offered where it lets an ordered key go, and does only what store.Skip
// allows, as the CLI and the audit API do: a delivery that has not failed is explained
// and left alone, one that does not exist is a 404, and neither is recorded; a failed
// one without a key is skipped (and recorded) with nothing let go, and the page says so.
func TestSkipIsOfferedForAFailedOrderedDeliveryAndExplainedOtherwise(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	hook := addHook(t, e, webhook.Input{Event: ptr("post.*"), TargetURL: ptr("https://hooks.example.com/o"), Ordered: ptr(true)})
	plain := addHook(t, e, webhook.Input{Event: ptr("post.*"), TargetURL: ptr("https://hooks.example.com/p")})
	event := emit(t, e.db, "post.published", `{"post":{"current":{"id":"p1"}}}`)
	delivery := func(webhookID, status string, key *string) int64 {
		var id int64
		if err := e.db.Pool.QueryRow(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, ordering_key)
			VALUES ($1, $2, $3, 1, $4) RETURNING id`, event, webhookID, status, key).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	failedOrdered := delivery(hook.ID, "failed", ptr("p1"))
	failedPlain := delivery(plain.ID, "failed", nil)
	c := e.client(t)
	csrf := e.signIn(t, c, e.key)
	page := func(id int64) string {
		_, p, _ := get(t, c, fmt.Sprintf("%s/ui/deliveries/%d", e.srv.URL, id))
		return p
	}
	if p := page(failedOrdered); !strings.Contains(p, fmt.Sprintf(`href="/ui/deliveries/%d/skip">Skip…</a>`, failedOrdered)) {
		t.Errorf("a failed delivery of an ordered webhook offers no Skip:\n%s", clip(p))
	}
	if p := page(failedPlain); strings.Contains(p, "Skip…") {
		t.Error("a failed delivery of an unordered webhook offers Skip")
	}

	if _, err := e.db.Pool.Exec(ctx, `UPDATE relay.deliveries SET status = 'succeeded' WHERE id = $1`, failedOrdered); err != nil {
		t.Fatal(err)
	}
	if p := page(failedOrdered); strings.Contains(p, "Skip…") {
		t.Error("a succeeded delivery offers Skip")
	}
	code, _, resp := get(t, c, fmt.Sprintf("%s/ui/deliveries/%d/skip", e.srv.URL, failedOrdered))
	if code != http.StatusSeeOther || resp.Header.Get("Location") != fmt.Sprintf("/ui/deliveries/%d", failedOrdered) {
		t.Errorf("the skip page of a succeeded delivery: %d %q, want 303 to the delivery", code, resp.Header.Get("Location"))
	}
	code, body, _ := post(t, c, fmt.Sprintf("%s/ui/deliveries/%d/skip", e.srv.URL, failedOrdered), url.Values{"csrf": {csrf}})
	if code != http.StatusConflict || !strings.Contains(body, "Only a failed delivery can be skipped: this one is succeeded. Nothing was changed.") {
		t.Errorf("skip of a succeeded delivery: %d\n%s", code, clip(body))
	}
	var st string
	if err := e.db.Pool.QueryRow(ctx, `SELECT status FROM relay.deliveries WHERE id = $1`, failedOrdered).Scan(&st); err != nil || st != "succeeded" {
		t.Errorf("after a refused skip the delivery is %s (%v)", st, err)
	}
	if code, _, _ := post(t, c, e.srv.URL+"/ui/deliveries/999999/skip", url.Values{"csrf": {csrf}}); code != http.StatusNotFound {
		t.Errorf("skip of no delivery: %d", code)
	}
	if code, _, _ := get(t, c, e.srv.URL+"/ui/deliveries/999999/skip"); code != http.StatusNotFound {
		t.Errorf("the skip page of no delivery: %d", code)
	}
	if got := changes(t, e); len(got) != 0 {
		t.Errorf("recorded %+v", got)
	}

	code, _, resp = post(t, c, fmt.Sprintf("%s/ui/deliveries/%d/skip", e.srv.URL, failedPlain), url.Values{"csrf": {csrf}})
	if code != http.StatusSeeOther || resp.Header.Get("Location") != fmt.Sprintf("/ui/deliveries/%d?done=skipped-0", failedPlain) {
		t.Fatalf("skip of a failed delivery without a key: %d %q", code, resp.Header.Get("Location"))
	}
	_, body, _ = get(t, c, e.srv.URL+resp.Header.Get("Location"))
	mustContain(t, "the skipped delivery", body, "Delivery skipped. No later delivery of its key was waiting.", `<span class="badge muted">skipped</span>`)
	got := changes(t, e)
	if len(got) != 1 || got[0].Action != "skipped a delivery" || got[0].Detail != fmt.Sprintf("delivery %d (failed after 1 attempt)", failedPlain) ||
		deref(got[0].WebhookID) != plain.ID {
		t.Errorf("recorded %+v", got)
	}
}

// Redelivering a delivery of an ordered key while another of its key holds it (failed,
// here) puts it behind that one, and the page says so rather than "within moments".
func TestRedeliveryBehindAnotherDeliveryOfItsKeySaysSo(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	hook := addHook(t, e, webhook.Input{Event: ptr("post.*"), TargetURL: ptr("https://hooks.example.com/o"), Ordered: ptr(true)})
	var ids []int64
	for _, ev := range []string{"post.published", "post.edited"} {
		event := emit(t, e.db, ev, `{"post":{"current":{"id":"p1"}}}`)
		var id int64
		if err := e.db.Pool.QueryRow(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, ordering_key)
			VALUES ($1, $2, 'failed', 1, 'p1') RETURNING id`, event, hook.ID).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	c := e.client(t)
	csrf := e.signIn(t, c, e.key)
	code, _, resp := post(t, c, fmt.Sprintf("%s/ui/deliveries/%d/redeliver", e.srv.URL, ids[1]), url.Values{"csrf": {csrf}})
	if code != http.StatusSeeOther || resp.Header.Get("Location") != fmt.Sprintf("/ui/deliveries/%d?done=redelivered-held", ids[1]) {
		t.Fatalf("redeliver behind a failed delivery of its key: %d %q", code, resp.Header.Get("Location"))
	}
	_, page, _ := get(t, c, e.srv.URL+resp.Header.Get("Location"))
	mustContain(t, "the redelivered delivery", html.UnescapeString(page), "Redelivery queued behind another delivery of its key",
		fmt.Sprintf(`Held behind <a href="/ui/deliveries/%d">delivery #%d</a> (failed`, ids[0], ids[0]))
}
