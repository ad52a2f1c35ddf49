package server_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/relayhq/relay/relay/internal/apikey"
	"github.com/relayhq/relay/relay/internal/server"
	"github.com/relayhq/relay/relay/internal/store"
	relaywebhook "github.com/relayhq/relay/relay/internal/webhook"
	"github.com/relayhq/relay/testutil"
)

// (b) of the forgery report: a Stripe event reaches every subscriber, but only the
// webhook an operator marked (Ghost's endpoint) gets a signature Ghost accepts as
// Stripe's. A '*' or unmarked stripe.* subscriber could otherwise replay it to Ghost.
func TestOnlyMarkedWebhooksGetStripeSignatureAndOnlyOnStripesEvents(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ghost := testutil.NewReceiver(t, nil)
	thirdAll := testutil.NewReceiver(t, nil)
	thirdStripe := testutil.NewReceiver(t, nil)
	stripeAddGhostWebhook(t, db, "stripe.*", ghost.URL()+stripePath)
	stripeAddWebhook(t, db, "*", thirdAll.URL())
	stripeAddWebhook(t, db, "stripe.*", thirdStripe.URL())
	stripeStartRelay(t, db, stripeTestSecret)
	srv, _ := stripeEndpoint(t, db, stripeTestSecret)

	body := stripeTestBody("evt_1Genuine", "checkout.session.completed")
	if code, reply := stripeMustPost(t, srv.URL+stripePath, body, stripeSign(body, stripeTestSecret, time.Now())); code != http.StatusOK || !reply.Emitted {
		t.Fatalf("POST = %d %+v, want 200 emitted", code, reply)
	}
	stripeVerifyDelivery(t, ghost.WaitFor(t, 1, 10*time.Second)[0], body)
	for name, rc := range map[string]*testutil.Receiver{"*": thirdAll, "unmarked stripe.*": thirdStripe} {
		req := rc.WaitFor(t, 1, 10*time.Second)[0]
		if h := req.Header.Get("Stripe-Signature"); h != "" {
			t.Errorf("the %s webhook got Stripe-Signature %q; only the marked one may", name, h)
		}
	}

	// An event the Stripe endpoint did not create never carries Stripe's signature, even
	// to the marked webhook and even if a stripe.* row reached the outbox by a way
	// relay.emit does not offer (here: the owner calling the internal writer directly).
	var forged string
	if err := db.Pool.QueryRow(context.Background(),
		`SELECT relay.emit_internal('stripe.charge.refunded', '{"id":"evt_FORGED"}', 'emit')::text`).Scan(&forged); err != nil {
		t.Fatal(err)
	}
	for _, req := range ghost.WaitFor(t, 2, 10*time.Second) {
		if req.Header.Get("webhook-id") == forged {
			if h := req.Header.Get("Stripe-Signature"); h != "" {
				t.Errorf("an event whose source is not the Stripe endpoint was signed as Stripe's: %q", h)
			}
		}
	}
	var source string
	if err := db.Pool.QueryRow(context.Background(), `SELECT source FROM relay.events WHERE id = $1::uuid`, forged).Scan(&source); err != nil || source != "emit" {
		t.Errorf("relay.events.source of the forged row = %q (%v), want emit", source, err)
	}
}

// (c): a redelivery of a Stripe event is signed only when the operator asks for it
// explicitly (`relay redeliver --stripe-signature`); through the audit API, which any
// Admin API key may call, it goes unsigned and Ghost refuses it.
func TestRedeliveredStripeEventIsSignedOnlyWhenAskedExplicitly(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ghost := testutil.NewReceiver(t, nil)
	stripeAddGhostWebhook(t, db, "stripe.*", ghost.URL()+stripePath)
	stripeStartRelay(t, db, stripeTestSecret)
	keys, err := apikey.NewStore(db.Pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New(server.Deps{Pool: db.Pool, Log: zerolog.New(zerolog.NewTestWriter(t)), StripeSecret: stripeTestSecret, Keys: keys}))
	t.Cleanup(srv.Close)
	a := &adminAPI{db: db, srv: srv, keys: keys}
	k, full, err := keys.Create(context.Background(), "integration")
	if err != nil {
		t.Fatal(err)
	}
	a.key = full
	// The key's integration owns the Stripe webhook (a key acts on its own webhooks
	// only); the operator's mark for Stripe-Signature stays.
	if _, err := db.Pool.Exec(context.Background(), `UPDATE relay.webhooks SET integration_id = $1`, k.Integration.ID); err != nil {
		t.Fatal(err)
	}

	body := stripeTestBody("evt_1Redeliver", "invoice.payment_succeeded")
	if code, _ := stripeMustPost(t, srv.URL+stripePath, body, stripeSign(body, stripeTestSecret, time.Now())); code != http.StatusOK {
		t.Fatalf("POST = %d", code)
	}
	stripeVerifyDelivery(t, ghost.WaitFor(t, 1, 10*time.Second)[0], body)
	var id int64
	if err := db.Pool.QueryRow(context.Background(), `SELECT id FROM relay.deliveries`).Scan(&id); err != nil {
		t.Fatal(err)
	}
	// Wait for the success to be recorded before redelivering (in flight is refused).
	testutil.Eventually(t, 10*time.Second, func() bool {
		return stripeCount(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'succeeded'`) == 1
	})

	code, raw := a.do(t, http.MethodPost, "/relay/v1/deliveries/"+strconv.FormatInt(id, 10)+"/redeliver", a.token(t), "")
	if code != http.StatusAccepted {
		t.Fatalf("audit API redeliver = %d %s", code, raw)
	}
	second := ghost.WaitFor(t, 2, 10*time.Second)[1]
	if h := second.Header.Get("Stripe-Signature"); h != "" {
		t.Errorf("a redelivery through the audit API carried Stripe-Signature %q", h)
	}
	if _, err := webhook.ConstructEvent(second.Body, second.Header.Get("Stripe-Signature"), stripeTestSecret); err == nil {
		t.Errorf("Ghost would accept the unsigned redelivery")
	}

	testutil.Eventually(t, 10*time.Second, func() bool {
		return stripeCount(t, db, `SELECT count(*) FROM relay.delivery_attempts`) == 2
	})
	if _, err := store.Redeliver(context.Background(), db.Pool, store.Selection{DeliveryID: id, StripeSignature: true}); err != nil {
		t.Fatal(err)
	}
	stripeVerifyDelivery(t, ghost.WaitFor(t, 3, 10*time.Second)[2], body)
}

// The mark is the operator's alone: the Admin API cannot set it, and moving a marked
// webhook elsewhere through the Admin API (or any edit of its URL or event that does
// not set it again) clears it, so Stripe's signature never follows it.
func TestStripeSignatureMarkCannotBeSetOrCarriedAwayThroughTheAdminAPI(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	code, raw := a.do(t, http.MethodPost, "/ghost/api/admin/webhooks/", a.token(t),
		`{"webhooks":[{"event":"stripe.*","target_url":"https://attacker.example/in","stripe_signature":true}]}`)
	if code != http.StatusCreated {
		t.Fatalf("add = %d %s", code, raw)
	}
	store := relaywebhook.Store{Pool: a.db.Pool}
	list, err := store.List(context.Background())
	if err != nil || len(list) != 1 {
		t.Fatalf("list = %v, %v", list, err)
	}
	if list[0].StripeSignature {
		t.Errorf("the Admin API set stripe_signature from the request body")
	}

	marked := true
	url := "https://ghost.example/members/webhooks/stripe/"
	event := "stripe.*"
	w, err := store.Add(context.Background(), relaywebhook.Input{Event: &event, TargetURL: &url, StripeSignature: &marked})
	if err != nil {
		t.Fatal(err)
	}
	moved := "https://attacker.example/other"
	w, err = store.Edit(context.Background(), w.ID, relaywebhook.Input{TargetURL: &moved})
	if err != nil {
		t.Fatal(err)
	}
	if w.StripeSignature {
		t.Errorf("a marked webhook moved to %s kept its Stripe-Signature mark", moved)
	}
	star := "*"
	if _, err := store.Add(context.Background(), relaywebhook.Input{Event: &star, TargetURL: &url, StripeSignature: &marked}); err == nil {
		t.Errorf("a '*' webhook was marked for Stripe-Signature")
	}
}
