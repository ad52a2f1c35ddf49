package console_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/relayhq/relay/relay/internal/pipeline"
	"github.com/relayhq/relay/relay/internal/relaytest"
	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/internal/webhook"
	"github.com/relayhq/relay/relay/signing"
	"github.com/relayhq/relay/testutil"
)

// receiverSwitch is a real receiver that answers 204, or 503 with a body while failing.
type receiverSwitch struct {
	rc      *testutil.Receiver
	failing atomic.Bool
	body    atomic.Value // what a failing answer says
}

func newReceiverSwitch(t testing.TB) *receiverSwitch {
	s := &receiverSwitch{}
	s.body.Store(`{"error":"receiver is down for maintenance"}`)
	s.rc = testutil.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		if s.failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(s.body.Load().(string)))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	return s
}

// startRelay runs the real pipeline on e's database. No retries: a first failure is
// final, which is where a redelivery starts from.
func startRelay(t testing.TB, e *env) {
	t.Helper()
	cfg := relaytest.Config(t)
	cfg.Retry = pipeline.RetryPolicy{Schedule: []time.Duration{}}
	cfg.StripeSecret = stripeSecret
	relaytest.Start(t, e.db.Pool, cfg)
}

func deliveryOf(t testing.TB, e *env, eventID string) int64 {
	t.Helper()
	var id int64
	testutil.Eventually(t, 15*time.Second, func() bool {
		return e.db.Pool.QueryRow(context.Background(), `SELECT id FROM relay.deliveries WHERE event_id = $1`, eventID).Scan(&id) == nil
	}, "no delivery of event %s", eventID)
	return id
}

// The operator's story in a real browser against a real relay: sign in; add a webhook
// with only an event and a URL; emit an event and watch its delivery and attempt
// appear; make the receiver fail and see the error; redeliver and see the second
// attempt; sign out and be sent back to sign-in. Every page is photographed on the way.
func TestOperatorFlowInTheBrowser(t *testing.T) {
	e := newEnv(t)
	rs := newReceiverSwitch(t)
	startRelay(t, e)
	ctx := tab(t, 4*time.Minute)
	base := e.srv.URL

	// Sign in: a page of the console sends the browser to sign in, and back afterwards.
	open(t, ctx, base+"/ui/webhooks")
	if loc := location(t, ctx); !strings.Contains(loc, "/ui/sign-in?next=%2Fui%2Fwebhooks") {
		t.Fatalf("not sent to sign in: %s", loc)
	}
	shoot(t, ctx, "sign-in")
	fill(t, ctx, "input[name=key]", e.key)
	click(t, ctx, "form.form button[type=submit]")
	if loc := location(t, ctx); loc != base+"/ui/webhooks" {
		t.Fatalf("after sign-in the browser is at %s", loc)
	}
	mustContain(t, "the empty webhooks page", text(t, ctx, "main"), "No webhooks yet")

	// Add a webhook with only an event and a URL; mistakes are explained next to their field.
	follow(t, ctx, "main a[href='/ui/webhooks/new']")
	fill(t, ctx, "#target_url", "not a url")
	if code := click(t, ctx, "form.form button[type=submit]"); code != http.StatusUnprocessableEntity {
		t.Errorf("an invalid form answered %d", code)
	}
	mustContain(t, "the event field", text(t, ctx, ".field:has(#event)"), "Choose the event that triggers this webhook.")
	mustContain(t, "the URL field", text(t, ctx, ".field:has(#target_url)"), "The URL must be an absolute http:// or https:// URL")
	shoot(t, ctx, "webhook-add-errors")
	choose(t, ctx, "#event", "post.published")
	fill(t, ctx, "#target_url", rs.rc.URL()+"/hook")
	shoot(t, ctx, "webhook-add")
	if code := click(t, ctx, "form.form button[type=submit]"); code != http.StatusCreated {
		t.Fatalf("adding the webhook answered %d", code)
	}
	secret := text(t, ctx, "#secret")
	var stored string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT secret FROM relay.webhooks`).Scan(&stored); err != nil || stored != secret || !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("the secret shown once is %q, the webhook's is %q (%v)", secret, stored, err)
	}
	shoot(t, ctx, "webhook-secret-once")
	follow(t, ctx, "section.secret a.btn.primary")

	// Emit an event: its delivery and its attempt appear.
	body := `{"post":{"current":{"id":"6651a1","title":"Hello, world","status":"published","url":"https://blog.example.com/hello/"},"previous":{"status":"draft"}}}`
	first := emit(t, e.db, "post.published", body)
	open(t, ctx, base+"/ui/deliveries")
	reloadUntilPresent(t, ctx, "main table .badge.ok", 20*time.Second)
	got := rs.rc.WaitFor(t, 1, 10*time.Second)
	if !bytes.Equal(got[0].Body, []byte(body)) || got[0].Header.Get("webhook-id") != first {
		t.Fatalf("the receiver got %s (%s)", got[0].Body, got[0].Header.Get("webhook-id"))
	}
	h := got[0].Header
	if err := signing.VerifyStandard(secret, h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature"), got[0].Body, 5*time.Minute, time.Now()); err != nil {
		t.Errorf("the delivery is not signed with the secret the console showed: %v", err)
	}
	follow(t, ctx, "main table a.strong")
	mustContain(t, "the delivery page", text(t, ctx, "main"), "Delivery #", first, "Hello, world")
	mustContain(t, "the attempt", text(t, ctx, "table.attempts"), "204")

	// The receiver fails: the next delivery shows the error and what the receiver said.
	rs.failing.Store(true)
	second := emit(t, e.db, "post.published", `{"post":{"current":{"id":"6651a2","title":"Second post"},"previous":{}}}`)
	failed := deliveryOf(t, e, second)
	open(t, ctx, fmt.Sprintf("%s/ui/deliveries/%d", base, failed))
	reloadUntil(t, ctx, "main h1", "failed", 20*time.Second)
	mustContain(t, "the failed attempt", text(t, ctx, "table.attempts"), "503", "HTTP 503", "receiver is down for maintenance")
	shoot(t, ctx, "delivery-failed")

	// Redeliver: the second attempt appears, and succeeds.
	rs.failing.Store(false)
	if code := click(t, ctx, "form[action$='/redeliver'] button"); code != http.StatusOK {
		t.Errorf("redeliver led to a %d", code)
	}
	mustContain(t, "the redelivery", text(t, ctx, "main"), "Redelivery queued")
	reloadUntil(t, ctx, "main h1", "succeeded", 20*time.Second)
	rows, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("table.attempts tbody tr").length`))
	if err != nil || rows != 2 {
		t.Fatalf("attempts shown after the redelivery: %d (%v), want 2", rows, err)
	}
	mustContain(t, "the second attempt", text(t, ctx, "table.attempts tbody tr:first-child"), "2", "204")
	shoot(t, ctx, "delivery-redelivered")

	// The rest of the console, photographed, with company: an ordered webhook whose
	// receiver is down (each member's first event fails and holds the member's later
	// ones), Ghost's Stripe endpoint, one disabled after a 410, a Stripe event and a
	// Ghost site.
	down := newReceiverSwitch(t)
	down.failing.Store(true)
	crm := addHook(t, e, webhook.Input{Event: ptr("member.*"), TargetURL: ptr(down.rc.URL() + "/crm?api_key=k-123"), Name: webhook.Value("CRM sync"),
		Ordered: ptr(true)})
	addHook(t, e, webhook.Input{Event: ptr("stripe.*"), TargetURL: ptr(rs.rc.URL() + "/members/webhooks/stripe/"), Name: webhook.Value("Ghost (Stripe)"),
		StripeSignature: ptr(true)})
	gone := addHook(t, e, webhook.Input{Event: ptr("page.published"), TargetURL: ptr("https://old-site.example.com/rebuild"), Name: webhook.Value("Old static site")})
	if _, _, err := store.DisableWebhook(context.Background(), e.db.Pool, gone.ID, "the receiver answered 410 Gone", 0); err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		emit(t, e.db, "post.published", fmt.Sprintf(`{"post":{"current":{"id":"p%d","title":"Post %d"},"previous":{}}}`, i, i))
		emit(t, e.db, "member.added", fmt.Sprintf(`{"member":{"current":{"id":"m%d","email":"reader%d@example.com"},"previous":{}}}`, i, i))
	}
	emit(t, e.db, "member.edited", `{"member":{"current":{"id":"m0","email":"reader0@example.org"},"previous":{"email":"reader0@example.com"}}}`)
	stripeEvent(t, e)
	rs.rc.WaitFor(t, 2+6+1, 20*time.Second)
	down.rc.WaitFor(t, 6, 20*time.Second)
	waitFannedOut(t, e)
	testutil.Eventually(t, 20*time.Second, func() bool {
		var failed int
		return e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.deliveries WHERE webhook_id = $1 AND status = 'failed'`,
			crm.ID).Scan(&failed) == nil && failed == 6
	}, "the CRM webhook's six first deliveries did not fail")
	if _, err := e.db.Pool.Exec(context.Background(), `INSERT INTO relay.ghost_sites (url, relay_url, events, admin_key_id, admin_secret_plain,
		inbound_secret_plain, content_version, last_received_at, last_received_event, received_count)
		VALUES ('https://blog.example.com', 'https://relay.example.com', ARRAY['post.published','post.edited','member.added'],
		        '6650c3a1b2c4d5e6f7a8b9c0', repeat('ab', 32), 'inbound', 'v6.65', now() - interval '3 minutes', 'post.published', 1284)`); err != nil {
		t.Fatal(err)
	}
	// One more change for the webhook's history.
	var hookID string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT id FROM relay.webhooks WHERE event = 'post.published'`).Scan(&hookID); err != nil {
		t.Fatal(err)
	}
	open(t, ctx, base+"/ui/webhooks/"+hookID+"/edit")
	fill(t, ctx, "#name", "Search index")
	click(t, ctx, "form.form button[type=submit]")
	mustContain(t, "the edited webhook", text(t, ctx, "main"), "Changes saved.", "Search index", "Ada Lovelace", "edited the webhook",
		"redelivered a delivery", "added the webhook")
	shoot(t, ctx, "webhook")
	open(t, ctx, base+"/ui/webhooks")
	mustContain(t, "the ordered webhook's row", text(t, ctx, "main table tbody"), "CRM sync", "ordered", "1 held", "6 keys blocked")
	shoot(t, ctx, "webhooks")
	open(t, ctx, base+"/ui/deliveries")
	shoot(t, ctx, "deliveries")
	open(t, ctx, base+"/ui/events")
	shoot(t, ctx, "events")
	open(t, ctx, base+"/ui/events/"+first)
	mustContain(t, "the event page", text(t, ctx, "main"), "Did it reach everyone?", "Search index", "succeeded", "Hello, world")
	copied, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.relayCopyText(document.querySelector("[data-copy-b64]"))`))
	if err != nil || copied != body {
		t.Errorf("the copy button copies %q (%v), want the exact bytes %q", copied, err, body)
	}
	shoot(t, ctx, "event")
	open(t, ctx, base+"/ui/stripe")
	shoot(t, ctx, "stripe")
	open(t, ctx, base+"/ui/ghost")
	shoot(t, ctx, "ghost")
	open(t, ctx, base+"/ui/")
	mustContain(t, "the overview", text(t, ctx, "main"), "Last hour", "Last 24 hours", "Webhooks that need attention",
		"1 held behind their key", "6 keys blocked")
	shoot(t, ctx, "overview")

	// On a phone.
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	open(t, ctx, base+"/ui/webhooks")
	shoot(t, ctx, "phone-webhooks")
	open(t, ctx, fmt.Sprintf("%s/ui/deliveries/%d", base, failed))
	shoot(t, ctx, "phone-delivery")
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}

	// Sign out: back at the sign-in page, and the console is closed again.
	click(t, ctx, "form.who button")
	if loc := location(t, ctx); loc != base+"/ui/sign-in?signed_out=1" {
		t.Errorf("after sign-out the browser is at %s", loc)
	}
	mustContain(t, "the sign-in page", text(t, ctx, "main"), "You are signed out.")
	open(t, ctx, base+"/ui/webhooks")
	if loc := location(t, ctx); !strings.Contains(loc, "/ui/sign-in") {
		t.Errorf("after sign-out /ui/webhooks showed %s", loc)
	}
}

// stripeEvent posts a verified Stripe event to the relay's Stripe endpoint, as Stripe
// would.
func stripeEvent(t testing.TB, e *env) {
	t.Helper()
	body := []byte(`{"id":"evt_1PzQd2LkdIwHu7ix0a1b2c3d","object":"event","type":"invoice.payment_succeeded","livemode":false,"created":1717000000,"data":{"object":{"id":"in_1"}}}`)
	req, _ := http.NewRequest("POST", e.srv.URL+"/members/webhooks/stripe/", bytes.NewReader(body))
	req.Header.Set("Stripe-Signature", signing.StripeSignature(stripeSecret, time.Now(), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("Stripe endpoint: %d", resp.StatusCode)
	}
}
