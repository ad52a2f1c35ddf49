package main_test

// The Ghost drop-in against a real, unmodified Ghost 6.65 (testutil/ghost) and the real
// relay binary: `relay ghost connect`, Ghost's own webhooks through the relay to two
// relay webhooks, a SIGKILL between events, a second connect, disconnect.

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/signing"
	"github.com/relayhq/relay/testutil"
	"github.com/relayhq/relay/testutil/ghost"
)

// connectResult is `relay ghost connect --json`.
type connectResult struct {
	Site struct {
		ID       string            `json:"id"`
		Events   []string          `json:"events"`
		Webhooks map[string]string `json:"webhooks"`
	} `json:"site"`
	Created   []string `json:"created"`
	Recreated []string `json:"recreated"`
	Updated   []string `json:"updated"`
	Removed   []string `json:"removed"`
}

func ghostConnect(t *testing.T, db *testutil.DB, site *ghost.Site, relayURL string, extra ...string) connectResult {
	t.Helper()
	args := append([]string{"ghost", "connect", "--site-url", site.URL, "--admin-key", site.AdminKey(),
		"--relay-url", relayURL, "--json"}, extra...)
	var res connectResult
	if err := json.Unmarshal([]byte(mustCLI(t, db, args...)), &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// relayWebhooksOnGhost counts the webhooks on the site that point at the relay.
func relayWebhooksOnGhost(t *testing.T, site *ghost.Site, relayURL string) int {
	t.Helper()
	rows := site.Query(t, `SELECT count(*) AS n FROM webhooks WHERE target_url LIKE ?`, relayURL+"/ghost/in/%")
	n, _ := rows[0]["n"].(float64)
	return int(n)
}

func TestUnmodifiedGhostSiteDeliversThroughTheRelayOnceSignedAndByteForByte(t *testing.T) {
	site := ghost.Shared(t)
	key := site.AdminKey()
	db := testutil.NewDB(t)
	addr := freeAddr(t)
	relayURL := "http://" + addr
	relay := startRelay(t, db.URL, "ghost-e2e", "RELAY_ADDR="+addr)

	const exactSecret, allSecret = "exact-receiver-secret", "all-receiver-secret"
	exact := testutil.NewReceiver(t, nil)
	all := testutil.NewReceiver(t, nil)
	mustCLI(t, db, "webhooks", "add", "post.published", exact.URL()+"/published", "--secret", exactSecret)
	mustCLI(t, db, "webhooks", "add", "*", all.URL()+"/all", "--secret", allSecret)
	// What Ghost itself sends, for comparing bytes: a webhook of the site's own, direct.
	direct := testutil.NewReceiver(t, nil)
	directHook := site.AddWebhook(t, key, "post.published", direct.URL()+"/direct", "direct-secret")
	t.Cleanup(func() { site.DeleteWebhook(t, key, directHook.ID) })

	res := ghostConnect(t, db, site, relayURL)
	if len(res.Created) != 29 || len(res.Updated)+len(res.Recreated) != 0 {
		t.Fatalf("first connect: created %d, updated %d, recreated %d; want 29 created", len(res.Created), len(res.Updated), len(res.Recreated))
	}
	t.Cleanup(func() { _, _, _ = cli(t, db, "ghost", "disconnect", "--site", res.Site.ID) })
	if n := relayWebhooksOnGhost(t, site, relayURL); n != 29 {
		t.Fatalf("Ghost has %d webhooks to the relay, want 29", n)
	}

	// Publish a post, edit it, add a tag and a member; SIGKILL the relay and restart it
	// between events; then delete the post.
	post := site.AddPost(t, key, "Through the relay", "<p>Café ✓ &amp; more</p>", "published")
	settle(t, db, 1)
	site.EditPost(t, key, post.ID, map[string]any{"title": "Through the relay, edited"})
	tag := site.AddTag(t, key, "relay-e2e-tag")
	t.Cleanup(func() { site.DeleteTag(t, key, tag.ID) })
	settle(t, db, 3)
	relay.kill()
	relay = startRelay(t, db.URL, "ghost-e2e-2", "RELAY_ADDR="+addr)
	member := site.AddMember(t, key, "relay-e2e@example.com", "Relay Member")
	t.Cleanup(func() { site.DeleteMember(t, key, member.ID) })
	site.DeletePost(t, key, post.ID)
	n := settle(t, db, 5)

	// Every event Ghost got a 2xx for (every ghost-sourced row) reached the '*' webhook
	// exactly once and post.published reached the exact webhook exactly once.
	var ids, published []string
	rows, err := db.Pool.Query(context.Background(), `SELECT id::text, event FROM relay.events WHERE source = 'ghost:' || $1`, res.Site.ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id, event string
		if err := rows.Scan(&id, &event); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		if event == "post.published" {
			published = append(published, id)
		}
	}
	rows.Close()
	if len(ids) != n || len(published) != 1 {
		t.Fatalf("relay stored %d Ghost events (%d post.published), want %d and 1", len(ids), len(published), n)
	}
	all.WaitFor(t, len(ids), 30*time.Second)
	exact.WaitFor(t, 1, 30*time.Second)
	time.Sleep(time.Second) // anything doubled would arrive meanwhile
	if dup := account(t, ids, []*testutil.Receiver{all}) + account(t, published, []*testutil.Receiver{exact}); dup != 0 {
		t.Errorf("%d duplicate deliveries", dup)
	}
	events := map[string]bool{}
	for _, r := range all.Requests() {
		if err := signing.VerifyGhost(allSecret, r.Header.Get("X-Ghost-Signature"), r.Body, 0, r.At); err != nil {
			t.Errorf("'*' delivery: X-Ghost-Signature: %v", err)
		}
		if err := signing.VerifyStandard(allSecret, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), r.Body, 0, r.At); err != nil {
			t.Errorf("'*' delivery: webhook-signature: %v", err)
		}
		var head struct {
			Event string `json:"event"`
		}
		_ = json.Unmarshal(r.Body, &head)
		events[head.Event] = true
		if cv := r.Header.Get("Content-Version"); !strings.HasPrefix(cv, "v6.") {
			t.Errorf("Content-Version %q, want the one Ghost sent (v6.x)", cv)
		}
	}
	for _, e := range []string{"post.added", "post.published", "post.edited", "post.deleted", "tag.added", "member.added"} {
		if !events[e] {
			t.Errorf("no %s reached the '*' webhook (got %v)", e, events)
		}
	}
	// Byte for byte what Ghost sent: the exact webhook's body is the body Ghost sent its
	// own direct webhook for the same event.
	ghostBody := direct.WaitFor(t, 1, 30*time.Second)[0].Body
	got := exact.Requests()[0]
	if !bytes.Equal(got.Body, ghostBody) {
		t.Errorf("relay delivered a different body than Ghost sends:\n relay %.300q\n ghost %.300q", got.Body, ghostBody)
	}
	if err := signing.VerifyGhost(exactSecret, got.Header.Get("X-Ghost-Signature"), got.Body, 0, got.At); err != nil {
		t.Errorf("exact delivery: %v", err)
	}

	// A second connect creates nothing; disconnect leaves no relay webhook on the site.
	again := ghostConnect(t, db, site, relayURL)
	if len(again.Created)+len(again.Recreated) != 0 || len(again.Updated) != 29 || again.Site.ID != res.Site.ID {
		t.Errorf("second connect: %+v, want 29 updated and nothing created", again)
	}
	if n := relayWebhooksOnGhost(t, site, relayURL); n != 29 {
		t.Errorf("after a second connect Ghost has %d webhooks to the relay, want 29", n)
	}
	// One deleted on the Ghost side is re-created by the next connect.
	site.DeleteWebhook(t, key, res.Site.Webhooks["tag.added"])
	if again := ghostConnect(t, db, site, relayURL); len(again.Recreated) != 1 || again.Recreated[0] != "tag.added" || len(again.Created) != 0 {
		t.Errorf("connect after a deletion in Ghost: %+v, want tag.added re-created", again)
	}
	// The source is shown wherever events are.
	listed := mustCLI(t, db, "events", "list", "--source", "ghost:"+res.Site.ID, "--limit", "1000")
	if strings.Count(listed, "ghost:"+res.Site.ID) != len(ids) {
		t.Errorf("events list --source ghost:%s shows %d of %d events:\n%s", res.Site.ID, strings.Count(listed, "ghost:"+res.Site.ID), len(ids), listed)
	}
	if shown := mustCLI(t, db, "events", "show", ids[0]); !strings.Contains(shown, "from ghost:"+res.Site.ID) {
		t.Errorf("events show lacks the source:\n%s", shown)
	}
	out := mustCLI(t, db, "ghost", "status")
	if !strings.Contains(out, res.Site.ID) || !strings.Contains(out, site.URL) {
		t.Errorf("ghost status:\n%s", out)
	}
	mustCLI(t, db, "ghost", "disconnect", "--site", res.Site.ID)
	if n := relayWebhooksOnGhost(t, site, relayURL); n != 0 {
		t.Errorf("after disconnect Ghost still has %d webhooks to the relay", n)
	}
	if n := site.Query(t, `SELECT count(*) AS n FROM webhooks WHERE id = ?`, directHook.ID)[0]["n"].(float64); n != 1 {
		t.Errorf("disconnect deleted a webhook it did not create")
	}
}

// settle waits until the relay has stored at least n events from Ghost and Ghost has
// nothing left to send (Ghost sends after its own commit, one webhook after another),
// and returns how many it stored.
func settle(t *testing.T, db *testutil.DB, atLeast int) int {
	t.Helper()
	count := func() int {
		var n int
		if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.events WHERE source LIKE 'ghost:%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	testutil.Eventually(t, 60*time.Second, func() bool { return count() >= atLeast }, "relay stored fewer than %d Ghost events", atLeast)
	for last := count(); ; {
		time.Sleep(1500 * time.Millisecond)
		n := count()
		if n == last {
			return n
		}
		last = n
	}
}

// Ghost in production sends webhooks only to public addresses; connect says so, and
// which setting allows it, rather than leaving the user to find URL_PRIVATE_INVALID in
// Ghost's log.
func TestGhostConnectExplainsWhatBlocksAPrivateRelayURL(t *testing.T) {
	site := ghost.Start(t, ghost.Options{Production: true})
	site.Setup(t)
	db := testutil.NewDB(t)
	_, errOut, code := cli(t, db, "ghost", "connect", "--site-url", site.URL, "--admin-key", site.AdminKey(),
		"--relay-url", "http://127.0.0.1:9", "--events", "post.published")
	if code == 0 || !strings.Contains(errOut, "security__allowWebhookInternalIPs=true") || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("connect to a private relay URL from a production Ghost: exit %d, stderr %q; want one line naming security__allowWebhookInternalIPs=true", code, errOut)
	}
	if n := relayWebhooksOnGhost(t, site, "http://127.0.0.1:9"); n != 0 {
		t.Errorf("connect created %d webhooks although it refused", n)
	}

	// The errors a user will hit: a key Ghost refuses, and no Ghost at the URL.
	bad := ghost.KeyID(site.AdminKey()) + ":" + strings.Repeat("0", 64)
	_, errOut, code = cli(t, db, "ghost", "connect", "--site-url", site.URL, "--admin-key", bad, "--relay-url", "https://relay.example.com")
	if code == 0 || !strings.Contains(errOut, "refused the Admin API key") {
		t.Errorf("wrong key: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = cli(t, db, "ghost", "connect", "--site-url", "http://"+freeAddr(t), "--admin-key", site.AdminKey(), "--relay-url", "https://relay.example.com")
	if code == 0 || !strings.Contains(errOut, "cannot reach Ghost") {
		t.Errorf("no Ghost: exit %d, stderr %q", code, errOut)
	}
}

// The inbound endpoint refuses what does not come from the site, each with its code.
func TestGhostInboundRefusesWhatGhostDidNotSign(t *testing.T) {
	site := ghost.Shared(t)
	db := testutil.NewDB(t)
	addr := freeAddr(t)
	startRelay(t, db.URL, "ghost-in", "RELAY_ADDR="+addr)
	res := ghostConnect(t, db, site, "http://"+addr, "--events", "tag.added")
	t.Cleanup(func() { mustCLI(t, db, "ghost", "disconnect", "--site", res.Site.ID) })

	post := func(path, sig string, body []byte) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, bytes.NewReader(body))
		if sig != "" {
			req.Header.Set("X-Ghost-Signature", sig)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	body := []byte(`{"event":"tag.added","tag":{"current":{"id":"x"},"previous":{}}}`)
	forged := signing.GhostSignature("not-the-site-secret", body, time.Now())
	in := "/ghost/in/" + res.Site.ID + "/tag.added"
	for _, tc := range []struct {
		name string
		path string
		sig  string
		body []byte
		want int
	}{
		{"no signature", in, "", body, http.StatusUnauthorized},
		{"forged signature", in, forged, body, http.StatusUnauthorized},
		{"unknown site", "/ghost/in/" + strings.Repeat("a", 24) + "/tag.added", forged, body, http.StatusNotFound},
		{"unknown event", "/ghost/in/" + res.Site.ID + "/tag.exploded", forged, body, http.StatusBadRequest},
		{"over 1 MiB", in, forged, bytes.Repeat([]byte("a"), 1<<20+1), http.StatusRequestEntityTooLarge},
	} {
		if got := post(tc.path, tc.sig, tc.body); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	var n int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.events`).Scan(&n); err != nil || n != 0 {
		t.Errorf("refused requests stored %d events (%v)", n, err)
	}
	metrics := httpGet(t, "http://"+addr+"/metrics")
	for _, want := range []string{`relay_ghost_inbound_total{outcome="bad_signature"} 2`, `relay_ghost_inbound_total{outcome="unknown_site"} 1`,
		`relay_ghost_inbound_total{outcome="unknown_event"} 1`, `relay_ghost_inbound_total{outcome="too_large"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(resp.Body)
	return b.String()
}

// Stripe in front of a real Ghost: a Stripe-signed event posted to the relay reaches
// Ghost's own /members/webhooks/stripe/, re-signed with the shared WEBHOOK_SECRET, and
// Ghost accepts it (2xx).
func TestStripeEventThroughTheRelayIsAcceptedByRealGhost(t *testing.T) {
	const secret = "whsec_relaye2eStripeSecretForGhost"
	site := ghost.Start(t, ghost.Options{})
	site.Setup(t)
	site.SetStripeKeys(t, true)
	site.Restart(t, map[string]string{"WEBHOOK_SECRET": secret})
	db := testutil.NewDB(t)
	addr := freeAddr(t)
	startRelay(t, db.URL, "stripe-ghost", "RELAY_ADDR="+addr, "WEBHOOK_SECRET="+secret)
	mustCLI(t, db, "webhooks", "add", "stripe.*", site.URL+"/members/webhooks/stripe/", "--stripe-signature")

	body := []byte(`{"id":"evt_1RelayGhostE2E","object":"event","api_version":"2024-06-20","created":1751000000,` +
		`"data":{"object":{"id":"cus_RelayE2E","object":"customer","email":"e2e@example.com"}},"livemode":false,` +
		`"pending_webhooks":1,"request":{"id":null,"idempotency_key":null},"type":"customer.updated"}`)
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/members/webhooks/stripe/", bytes.NewReader(body))
	req.Header.Set("Stripe-Signature", signing.StripeSignature(secret, time.Now(), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("relay answered Stripe %d", resp.StatusCode)
	}
	var status string
	var code *int
	testutil.Eventually(t, 30*time.Second, func() bool {
		err := db.Pool.QueryRow(context.Background(), `SELECT d.status, d.last_status_code FROM relay.deliveries d
			JOIN relay.stripe_events s ON s.event_id = d.event_id WHERE s.id = 'evt_1RelayGhostE2E'`).Scan(&status, &code)
		return err == nil && status != "pending"
	}, "the Stripe event was not delivered to Ghost")
	if status != "succeeded" || code == nil || *code/100 != 2 {
		t.Errorf("delivery to Ghost's Stripe endpoint: %s, last status %v; want succeeded with a 2xx", status, code)
	}
}
