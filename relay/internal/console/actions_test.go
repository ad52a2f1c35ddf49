package console_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/internal/webhook"
)

type changeRow struct {
	KeyID, KeyName, Action, Detail string
	WebhookID                      *string
}

func changes(t testing.TB, e *env) []changeRow {
	t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `SELECT key_id, key_name, action, detail, webhook_id FROM relay.console_changes
		WHERE action NOT IN ('signed in', 'signed out') ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []changeRow
	for rows.Next() {
		var c changeRow
		if err := rows.Scan(&c.KeyID, &c.KeyName, &c.Action, &c.Detail, &c.WebhookID); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// Add, edit, disable, enable, rotate and delete each do what they say, and each is
// recorded with who did it (the key and its name), what and when, shown on the
// webhook's page — after deletion too.
func TestWebhookChangesAreMadeAndRecordedWithWhoAndWhat(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.client(t)
	csrf := e.signIn(t, c, e.key)
	base := e.srv.URL

	code, _, resp := post(t, c, base+"/ui/webhooks", url.Values{"csrf": {csrf}, "event": {"post.published"},
		"target_url": {"https://hooks.example.com/in?token=keep-me"}, "secret_mode": {"none"}})
	if code != http.StatusSeeOther {
		t.Fatalf("add: %d", code)
	}
	id := strings.TrimSuffix(strings.TrimPrefix(resp.Header.Get("Location"), "/ui/webhooks/"), "?done=added")
	wh, err := webhook.Store{Pool: e.db.Pool}.Get(ctx, id)
	if err != nil || wh.Event != "post.published" || wh.Secret != nil || wh.IntegrationID != nil {
		t.Fatalf("added webhook %+v (%v): want post.published, no secret, the operator's", wh, err)
	}

	// The edit form shows the URL masked; saved unchanged, the real URL stays.
	_, form, _ := get(t, c, base+"/ui/webhooks/"+id+"/edit")
	if !strings.Contains(form, `value="https://hooks.example.com/in?token=xxxxx"`) {
		t.Fatalf("the edit form does not show the masked URL:\n%s", clip(form))
	}
	code, _, _ = post(t, c, base+"/ui/webhooks/"+id, url.Values{"csrf": {csrf}, "event": {"post.*"},
		"target_url": {"https://hooks.example.com/in?token=xxxxx"}, "name": {"Search"}, "secret_mode": {"set"}, "secret": {"s3cret"}})
	if code != http.StatusSeeOther {
		t.Fatalf("edit: %d", code)
	}
	wh, _ = webhook.Store{Pool: e.db.Pool}.Get(ctx, id)
	if wh.Event != "post.*" || wh.TargetURL != "https://hooks.example.com/in?token=keep-me" || deref(wh.Name) != "Search" || deref(wh.Secret) != "s3cret" {
		t.Fatalf("after the edit: %+v", wh)
	}

	// Disable cancels pending work, with the operator's name as the reason.
	eventID := emit(t, e.db, "post.published", `{}`)
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id) VALUES ($1, $2)`, eventID, id); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := post(t, c, base+"/ui/webhooks/"+id+"/disable", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Fatalf("disable: %d", code)
	}
	wh, _ = webhook.Store{Pool: e.db.Pool}.Get(ctx, id)
	var dstatus string
	if err := e.db.Pool.QueryRow(ctx, `SELECT status FROM relay.deliveries WHERE webhook_id = $1`, id).Scan(&dstatus); err != nil {
		t.Fatal(err)
	}
	if wh.Status != "disabled" || deref(wh.DisabledReason) != "disabled in the console by Ada Lovelace" || dstatus != "cancelled" {
		t.Errorf("after disable: %s (%s), its pending delivery %s", wh.Status, deref(wh.DisabledReason), dstatus)
	}
	if code, _, _ := post(t, c, base+"/ui/webhooks/"+id+"/enable", url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Fatalf("enable: %d", code)
	}
	if wh, _ = (webhook.Store{Pool: e.db.Pool}).Get(ctx, id); wh.Status != "active" || wh.DisabledReason != nil {
		t.Errorf("after enable: %s %v", wh.Status, wh.DisabledReason)
	}

	// Rotate: asks first, then shows the new secret once.
	_, confirm, _ := get(t, c, base+"/ui/webhooks/"+id+"/rotate-secret")
	mustContain(t, "the rotate page", confirm, "Generate a new secret")
	code, shown, _ := post(t, c, base+"/ui/webhooks/"+id+"/rotate-secret", url.Values{"csrf": {csrf}})
	wh, _ = webhook.Store{Pool: e.db.Pool}.Get(ctx, id)
	if code != http.StatusOK || !strings.HasPrefix(deref(wh.Secret), "whsec_") || !strings.Contains(html.UnescapeString(shown), *wh.Secret) {
		t.Errorf("rotate: %d, secret %q", code, deref(wh.Secret))
	}

	// Delete: asks first, saying what it cancels; the history stays on the page.
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id) VALUES ($1, $2)
		ON CONFLICT (event_id, webhook_id) DO UPDATE SET status = 'pending'`, eventID, id); err != nil {
		t.Fatal(err)
	}
	_, confirm, _ = get(t, c, base+"/ui/webhooks/"+id+"/delete")
	mustContain(t, "the delete page", confirm, "1 pending delivery is cancelled", "stay in the audit trail")
	code, _, resp = post(t, c, base+"/ui/webhooks/"+id+"/delete", url.Values{"csrf": {csrf}})
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/webhooks?done=deleted" {
		t.Fatalf("delete: %d %s", code, resp.Header.Get("Location"))
	}
	if _, err := (webhook.Store{Pool: e.db.Pool}).Get(ctx, id); err != webhook.ErrNotFound {
		t.Errorf("the webhook is still there: %v", err)
	}
	if err := e.db.Pool.QueryRow(ctx, `SELECT status FROM relay.deliveries WHERE webhook_id = $1`, id).Scan(&dstatus); err != nil || dstatus != "cancelled" {
		t.Errorf("its pending delivery is %s (%v), want cancelled and kept", dstatus, err)
	}

	got := changes(t, e)
	want := []string{"added the webhook", "edited the webhook", "disabled the webhook", "enabled the webhook", "rotated the secret", "deleted the webhook"}
	if len(got) != len(want) {
		t.Fatalf("recorded changes %+v, want %v", got, want)
	}
	for i, ch := range got {
		if ch.Action != want[i] || ch.KeyID != e.keyID || ch.KeyName != "Ada Lovelace" || deref(ch.WebhookID) != id {
			t.Errorf("change %d: %+v, want %q by %s (Ada Lovelace) on %s", i, ch, want[i], e.keyID, id)
		}
	}
	for _, d := range []struct {
		i   int
		has string
	}{{1, "event post.published → post.*"}, {1, `name "" → "Search"`},
		{2, "1 pending delivery cancelled"}, {5, "1 pending delivery cancelled"}, {0, "token=xxxxx"}} {
		if !strings.Contains(got[d.i].Detail, d.has) {
			t.Errorf("change %q says %q, want it to mention %q", got[d.i].Action, got[d.i].Detail, d.has)
		}
	}
	for _, ch := range got {
		if strings.Contains(ch.Detail, "keep-me") || strings.Contains(ch.Detail, "s3cret") {
			t.Errorf("a recorded change holds a secret: %q", ch.Detail)
		}
	}
	_, page, _ := get(t, c, base+"/ui/webhooks/"+id)
	mustContain(t, "the deleted webhook's page", html.UnescapeString(page), "Deleted webhook", "Ada Lovelace", "deleted the webhook",
		"rotated the secret", "added the webhook")
}

// Mistakes are explained next to their field, in words; nothing is saved.
func TestValidationErrorsAppearNextToTheirField(t *testing.T) {
	e := newEnv(t)
	addHook(t, e, webhook.Input{Event: ptr("post.published"), TargetURL: ptr("https://hooks.example.com/a")})
	c := e.client(t)
	csrf := e.signIn(t, c, e.key)
	fieldError := regexp.MustCompile(`(?s)<(?:div|fieldset) class="field has-error">.*?<span class="field-error"[^>]*>([^<]+)</span>`)
	for _, tc := range []struct {
		form  url.Values
		field string
		want  string
	}{
		{url.Values{"target_url": {"https://x.example/"}, "secret_mode": {"none"}}, "event", "Choose the event that triggers this webhook."},
		{url.Values{"event": {eventOtherValue}, "event_other": {"post.nope"}, "target_url": {"https://x.example/"}, "secret_mode": {"none"}}, "event", "No event is called 'post.nope'."},
		{url.Values{"event": {"post.published"}, "target_url": {"ftp://x.example/"}, "secret_mode": {"none"}}, "target_url", `The URL must be an absolute http:// or https:// URL, got "ftp://x.example/".`},
		{url.Values{"event": {"post.published"}, "target_url": {"https://hooks.example.com/a"}, "secret_mode": {"none"}}, "target_url", "Another webhook already sends this event to this URL."},
		{url.Values{"event": {"post.published"}, "target_url": {"https://x.example/"}, "secret_mode": {"set"}, "secret": {"whsec_!!"}}, "secret", "A secret that starts with whsec_ must be followed by base64"},
		{url.Values{"event": {"post.published"}, "target_url": {"https://x.example/"}, "name": {strings.Repeat("n", 192)}, "secret_mode": {"none"}}, "name", "The name must be at most 191 characters."},
		{url.Values{"event": {"post.published"}, "target_url": {"https://x.example/"}, "secret_mode": {"set"}}, "secret", "Enter the secret"},
	} {
		tc.form.Set("csrf", csrf)
		code, body, _ := post(t, c, e.srv.URL+"/ui/webhooks", tc.form)
		m := fieldError.FindAllStringSubmatch(body, -1)
		if code != http.StatusUnprocessableEntity || len(m) != 1 || !strings.HasPrefix(html.UnescapeString(m[0][1]), tc.want) {
			t.Errorf("%v: %d, errors %v; want 422 and %q next to %s", tc.form, code, m, tc.want, tc.field)
		}
		if !strings.Contains(body, `name="`+tc.field+`"`) {
			t.Errorf("%v: the form lost its %s field", tc.form, tc.field)
		}
	}
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.webhooks`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d webhooks after refused forms (%v)", n, err)
	}
}

const eventOtherValue = "other"

// From the console a Stripe event is redelivered without Stripe-Signature, even to the
// webhook marked for it, and the delivery page says so; its own attempts carry it.
func TestConsoleRedeliveryOfAStripeEventGoesWithoutStripeSignature(t *testing.T) {
	e := newEnv(t)
	rs := newReceiverSwitch(t)
	rs.failing.Store(true)
	addHook(t, e, webhook.Input{Event: ptr("stripe.*"), TargetURL: ptr(rs.rc.URL() + "/members/webhooks/stripe/"), StripeSignature: ptr(true)})
	startRelay(t, e)
	stripeEvent(t, e)
	first := rs.rc.WaitFor(t, 1, 10*time.Second)
	if first[0].Header.Get("Stripe-Signature") == "" {
		t.Fatal("the delivery's own attempt carries no Stripe-Signature")
	}
	var deliveryID int64
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT id FROM relay.deliveries`).Scan(&deliveryID); err != nil {
		t.Fatal(err)
	}
	waitForStatus(t, e, deliveryID, "failed")
	rs.failing.Store(false)
	c := e.client(t)
	csrf := e.signIn(t, c, e.key)
	_, page, _ := get(t, c, fmt.Sprintf("%s/ui/deliveries/%d", e.srv.URL, deliveryID))
	mustContain(t, "a Stripe delivery's page", page, "without Stripe-Signature", fmt.Sprintf("relay redeliver %d --stripe-signature", deliveryID))
	if code, _, _ := post(t, c, fmt.Sprintf("%s/ui/deliveries/%d/redeliver", e.srv.URL, deliveryID), url.Values{"csrf": {csrf}}); code != http.StatusSeeOther {
		t.Fatalf("redeliver: %d", code)
	}
	second := rs.rc.WaitFor(t, 2, 10*time.Second)
	if sig := second[1].Header.Get("Stripe-Signature"); sig != "" {
		t.Errorf("the console's redelivery carries Stripe-Signature %q", sig)
	}
	waitForStatus(t, e, deliveryID, "succeeded")
	got := changes(t, e)
	if len(got) != 1 || got[0].Action != "redelivered a delivery" || !strings.Contains(got[0].Detail, "failed after 1 attempt") {
		t.Errorf("recorded %+v", got)
	}
}

// A redelivery the queue cannot take is explained, and nothing is recorded.
func TestRedeliveryOfADisabledWebhooksDeliveryIsExplained(t *testing.T) {
	e := newEnv(t)
	hook, deliveryID, _, _ := fixture(t, e)
	if _, _, err := store.DisableWebhook(context.Background(), e.db.Pool, hook.ID, "test", 0); err != nil {
		t.Fatal(err)
	}
	c := e.client(t)
	csrf := e.signIn(t, c, e.key)
	code, body, _ := post(t, c, fmt.Sprintf("%s/ui/deliveries/%d/redeliver", e.srv.URL, deliveryID), url.Values{"csrf": {csrf}})
	if code != http.StatusConflict || !strings.Contains(body, "Enable it first") {
		t.Errorf("redeliver to a disabled webhook: %d", code)
	}
	if got := changes(t, e); len(got) != 0 {
		t.Errorf("recorded %+v", got)
	}
	if code, _, _ := post(t, c, e.srv.URL+"/ui/deliveries/999999/redeliver", url.Values{"csrf": {csrf}}); code != http.StatusNotFound {
		t.Errorf("redeliver of no delivery: %d", code)
	}
}

// An event's page answers "did it reach everyone?": a row per matching webhook, and for
// a webhook without a delivery, or an event without any, the reason.
func TestEventPageSaysWhyThereIsNoDelivery(t *testing.T) {
	e := newEnv(t)
	c := e.client(t)
	e.signIn(t, c, e.key)
	// Not fanned out yet: no relay runs.
	waiting := emit(t, e.db, "post.published", `{}`)
	_, page, _ := get(t, c, e.srv.URL+"/ui/events/"+waiting)
	mustContain(t, "an unread event's page", page, "still in the outbox backlog")

	rs := newReceiverSwitch(t)
	startRelay(t, e)
	lonely := emit(t, e.db, "member.added", `{"member":{"current":{},"previous":{}}}`)
	waitFannedOut(t, e)
	_, page, _ = get(t, c, e.srv.URL+"/ui/events/"+lonely)
	mustContain(t, "an event no webhook matched", page, "No webhook matched this event when it was fanned out")

	hook := addHook(t, e, webhook.Input{Event: ptr("member.*"), TargetURL: ptr(rs.rc.URL() + "/m"), Name: webhook.Value("CRM")})
	_, page, _ = get(t, c, e.srv.URL+"/ui/events/"+lonely)
	mustContain(t, "a webhook added later", html.UnescapeString(page), "CRM", "Added after this event was emitted")

	reached := emit(t, e.db, "member.added", `{"member":{"current":{"id":"m1"},"previous":{}}}`)
	rs.rc.WaitFor(t, 1, 10*time.Second)
	waitForStatus(t, e, deliveryOf(t, e, reached), "succeeded")
	if _, _, err := store.DisableWebhook(context.Background(), e.db.Pool, hook.ID, "test", 0); err != nil {
		t.Fatal(err)
	}
	after := emit(t, e.db, "member.added", `{}`)
	waitFannedOut(t, e)
	_, page, _ = get(t, c, e.srv.URL+"/ui/events/"+reached)
	mustContain(t, "a delivered event", html.UnescapeString(page), "CRM", "succeeded", "1 / 1")
	_, page, _ = get(t, c, e.srv.URL+"/ui/events/"+after)
	mustContain(t, "an event of a disabled webhook", html.UnescapeString(page), "CRM", "Disabled now", "0 / 1")
}

func waitFannedOut(t testing.TB, e *env) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var unread bool
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM relay.outbox o
			LEFT JOIN relay.outbox_offsets g ON g.consumer_group = 'relay'
			WHERE g.consumer_group IS NULL OR (o.transaction_id, o."offset") > (g.last_processed_transaction_id, g.offset_acked))`).Scan(&unread); err != nil {
			t.Fatal(err)
		}
		if !unread {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay did not fan out the outbox")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The event body's exact bytes — CR LF, spacing, key order, non-ASCII — come out of the
// download and out of what the copy button copies.
func TestExactBytesOfAnEventBody(t *testing.T) {
	e := newEnv(t)
	body := "{\r\n  \"b\":1,   \"a\": \"Ünïcødé ✓ <tag> &amp;\"\r\n}"
	id := emit(t, e.db, "post.published", body)
	c := e.client(t)
	e.signIn(t, c, e.key)
	code, got, resp := get(t, c, e.srv.URL+"/ui/events/"+id+"/body")
	if code != http.StatusOK || got != body || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
		!strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "sandbox") {
		t.Errorf("download: %d %q %v", code, got, resp.Header)
	}
	_, page, _ := get(t, c, e.srv.URL+"/ui/events/"+id)
	m := regexp.MustCompile(`data-copy-b64="([^"]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no copy button")
	}
	raw, err := base64.StdEncoding.DecodeString(html.UnescapeString(m[1]))
	if err != nil || string(raw) != body {
		t.Errorf("the copy button holds %q (%v)", raw, err)
	}
	mustContain(t, "the pretty-printed body", html.UnescapeString(page), `"a": "Ünïcødé ✓ <tag> &amp;"`)
}
