package main_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/signing"
	"github.com/relayhq/relay/testutil"
)

// ghostToken makes an Admin API token exactly as Ghost's JavaScript client does.
func ghostToken(t *testing.T, key string) string {
	t.Helper()
	id, secret, ok := strings.Cut(strings.TrimSpace(key), ":")
	if !ok {
		t.Fatalf("key %q is not id:secret", key)
	}
	raw, err := hex.DecodeString(secret)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	header, _ := json.Marshal(map[string]string{"alg": "HS256", "typ": "JWT", "kid": id})
	now := time.Now().Unix()
	claims, _ := json.Marshal(map[string]any{"iat": now, "exp": now + 300, "aud": "/admin/"})
	signed := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, raw)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

// TestNoSecretEverReachesTheLogs runs the real binary at trace level through everything
// that handles a secret — signed deliveries that succeed and fail, a target URL with a
// token in it, a Stripe event, Admin API calls, key creation — and then scans every line
// the relay and the CLI wrote.
func TestNoSecretEverReachesTheLogs(t *testing.T) {
	db := testutil.NewDB(t)
	const (
		stripeSecret = "whsec_stripeTOPSECRETstripeTOPSECRET00"
		hookSecret   = "whsec_aG9va1RPUFNFQ1JFVGhvb2tUT1BTRUNSRVQ="
		plainSecret  = "plain-TOPSECRET-ghost-secret"
		urlToken     = "URLTOKENTOPSECRET"
		kek          = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	)
	var cliLogs bytes.Buffer
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(relayBin, args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL="+db.URL, "RELAY_LOG_LEVEL=trace", "RELAY_KEY_ENCRYPTION_KEY="+kek)
		cmd.Stderr = &cliLogs
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("relay %v: %v\n%s", args, err, cliLogs.String())
		}
		return string(out)
	}
	ok := testutil.NewReceiver(t, nil)
	failing := testutil.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(http.StatusInternalServerError) })
	stripeSink := testutil.NewReceiver(t, nil)
	cli("webhooks", "add", "post.*", ok.URL()+"/ok", "--secret", hookSecret)
	cli("webhooks", "add", "post.*", failing.URL()+"/fail?token="+urlToken, "--secret", plainSecret)
	cli("webhooks", "add", "post.*", "http://127.0.0.1:1/closed?token="+urlToken, "--secret", plainSecret)
	cli("webhooks", "add", "stripe.*", stripeSink.URL()+"/members/webhooks/stripe/", "--stripe-signature")
	generated := cli("webhooks", "add", "tag.*", ok.URL()+"/gen", "--secret", "generate")
	_, genSecret, _ := strings.Cut(generated, "secret (shown once): ")
	genSecret = strings.TrimSpace(genSecret)
	key := strings.TrimSpace(cli("keys", "create", "--name", "scan"))
	_, keySecret, _ := strings.Cut(key, ":")

	p := startRelay(t, db.URL, "scan", "RELAY_LOG_LEVEL=trace", "WEBHOOK_SECRET="+stripeSecret,
		"RELAY_KEY_ENCRYPTION_KEY="+kek, "RELAY_RETRY_SCHEDULE=100ms,100ms")
	cli("emit", "post.published", "--data", `{"post":{"current":{"id":"1"},"previous":{}}}`)
	cli("emit", "tag.added", "--data", `{"tag":{"current":{"slug":"x"},"previous":{}}}`)

	body := []byte(`{"id":"evt_scan1","object":"event","type":"customer.created","api_version":"2024-06-20","created":1700000000,"data":{"object":{}}}`)
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.addr+"/members/webhooks/stripe/", bytes.NewReader(body))
	req.Header.Set("Stripe-Signature", signing.StripeSignature(stripeSecret, time.Now(), body))
	req.Header.Set("Content-Type", "application/json")
	mustDo(t, req, http.StatusOK)
	bad, _ := http.NewRequest(http.MethodPost, "http://"+p.addr+"/members/webhooks/stripe/", bytes.NewReader(body))
	bad.Header.Set("Stripe-Signature", "t=1,v1="+strings.Repeat("ab", 32))
	mustDo(t, bad, http.StatusUnauthorized)

	token := ghostToken(t, key)
	add, _ := http.NewRequest(http.MethodPost, "http://"+p.addr+"/ghost/api/admin/webhooks/",
		strings.NewReader(fmt.Sprintf(`{"webhooks":[{"event":"page.added","target_url":"%s/admin?token=%s","secret":"%s"}]}`, ok.URL(), urlToken, plainSecret)))
	add.Header.Set("Authorization", "Ghost "+token)
	add.Header.Set("Content-Type", "application/json")
	mustDo(t, add, http.StatusCreated)
	list, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+"/relay/v1/deliveries?status=pending", nil)
	list.Header.Set("Authorization", "Ghost "+token)
	mustDo(t, list, http.StatusOK)
	forged, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+"/ghost/api/admin/webhooks/", nil)
	forged.Header.Set("Authorization", "Ghost "+token+"x")
	mustDo(t, forged, http.StatusUnauthorized)

	ok.WaitFor(t, 2, 15*time.Second)
	failing.WaitFor(t, 3, 15*time.Second) // first attempt and both retries
	stripeSink.WaitFor(t, 1, 15*time.Second)
	cli("webhooks", "list")
	cli("webhooks", "list", "--json")
	cli("deliveries", "list", "--json")
	cli("keys", "list", "--json")

	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	<-p.done
	p.done <- nil

	logs := p.out.String() + cliLogs.String()
	if !strings.Contains(logs, `"level":"trace"`) && !strings.Contains(logs, `"level":"debug"`) {
		t.Fatalf("expected trace/debug lines to scan; got:\n%s", tail(logs, 2000))
	}
	secrets := map[string]string{
		"Stripe WEBHOOK_SECRET":      stripeSecret,
		"webhook whsec_ secret":      hookSecret,
		"webhook plain secret":       plainSecret,
		"generated webhook secret":   genSecret,
		"token in a target URL":      urlToken,
		"Admin API key secret":       keySecret,
		"Admin API JWT":              token,
		"RELAY_KEY_ENCRYPTION_KEY":   kek,
		"whsec_ key, base64-decoded": string(mustDecode(t, strings.TrimPrefix(hookSecret, "whsec_"))),
	}
	lines := strings.Count(logs, "\n")
	for name, secret := range secrets {
		if secret == "" {
			t.Fatalf("%s: empty (the test did not capture it)", name)
		}
		if i := strings.Index(logs, secret); i >= 0 {
			start := max(0, strings.LastIndex(logs[:i], "\n"))
			t.Errorf("%s appears in the logs: %s", name, logs[start:min(len(logs), i+len(secret)+80)])
		}
	}
	t.Logf("scanned %d log lines (%d bytes) for %d secrets", lines, len(logs), len(secrets))
}

func mustDecode(t *testing.T, s string) []byte {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustDo(t *testing.T, req *http.Request, want int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		t.Fatalf("%s %s = %d, want %d: %s", req.Method, req.URL.Path, resp.StatusCode, want, b)
	}
}
