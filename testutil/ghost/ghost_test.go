package ghost_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/signing"
	"github.com/relayhq/relay/testutil"
	"github.com/relayhq/relay/testutil/ghost"
)

func TestMain(m *testing.M) { testutil.Main(m, ghost.StopShared) }

// Ghost itself, unmodified, signs and sends a post.published webhook that the project's
// Ghost verifier accepts, and sends it exactly once.
func TestWebhookFromRealGhost(t *testing.T) {
	// Not parallel: it adds a webhook to the shared site and publishes a post there, and
	// the shared site's webhooks fire for everyone's posts.
	site := ghost.Shared(t)
	key := site.AdminKey()
	rc := testutil.NewReceiver(t, nil)
	const secret = "harness-secret-1"
	wh := site.AddWebhook(t, key, "post.published", rc.URL()+"/ghost-hook", secret)
	t.Cleanup(func() { site.DeleteWebhook(t, key, wh.ID) })
	if wh.Event != "post.published" || wh.TargetURL != rc.URL()+"/ghost-hook" || wh.IntegrationID == "" {
		t.Errorf("webhook as added: %+v", wh)
	}

	post := site.AddPost(t, key, "Harness post", "<p>Harness body</p>", "published")
	t.Cleanup(func() { site.DeletePost(t, key, post.ID) })

	got := rc.WaitFor(t, 1, 60*time.Second)[0]
	if got.Method != http.MethodPost || got.Path != "/ghost-hook" {
		t.Errorf("Ghost sent %s %s", got.Method, got.Path)
	}
	if err := signing.VerifyGhost(secret, got.Header.Get("X-Ghost-Signature"), got.Body, 5*time.Minute, time.Now()); err != nil {
		t.Errorf("X-Ghost-Signature %q does not verify: %v", got.Header.Get("X-Ghost-Signature"), err)
	}
	if ua, cv := got.Header.Get("User-Agent"), got.Header.Get("Content-Version"); ua != "Ghost(https://github.com/TryGhost/Ghost)" || cv != "v6.65" {
		t.Errorf("User-Agent %q, Content-Version %q", ua, cv)
	}
	if !bytes.HasPrefix(got.Body, []byte(`{"event":"post.published","post":{"current":`)) {
		t.Errorf("body starts %.80s", got.Body)
	}
	var body struct {
		Post struct {
			Current struct{ ID, Title, Status string }
		}
	}
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	if c := body.Post.Current; c.ID != post.ID || c.Title != "Harness post" || c.Status != "published" {
		t.Errorf("post.current = %+v, want the post %s", c, post.ID)
	}

	// Ghost records the answer once it has it; after that nothing else may come.
	testutil.Eventually(t, 30*time.Second, func() bool {
		rows := site.Query(t, `select last_triggered_status from webhooks where id = ?`, wh.ID)
		return len(rows) == 1 && rows[0]["last_triggered_status"] == "200"
	}, "Ghost never recorded last_triggered_status 200 for webhook %s", wh.ID)
	if n := rc.Count(); n != 1 {
		t.Errorf("receiver got %d requests, want exactly 1", n)
	}
}

// A site of its own: Restart keeps the database and the session and applies new
// settings (WEBHOOK_SECRET turns Ghost's Stripe endpoint on); the cleanup stops the
// process and removes its directory.
func TestStartRestartCleanup(t *testing.T) {
	t.Parallel() // a site of its own
	var pid int
	var dir string
	t.Run("site", func(t *testing.T) {
		site := ghost.Start(t, ghost.Options{})
		pid, dir = site.PID(), site.ContentDir
		key := site.Setup(t)
		post := site.AddPost(t, key, "Before restart", "<p>x</p>", "draft")
		site.SetStripeKeys(t, true)

		const whsec = "whsec_harness_restart_secret"
		event := []byte(`{"id":"evt_harness_1","object":"event","type":"customer.updated","data":{"object":{"id":"cus_harness","object":"customer"}}}`)
		if status := stripePost(t, site, whsec, event); status != http.StatusUnauthorized {
			t.Errorf("Stripe endpoint before WEBHOOK_SECRET: HTTP %d, want 401", status)
		}

		oldURL := site.URL
		site.Restart(t, map[string]string{"WEBHOOK_SECRET": whsec})
		if site.PID() == pid || !site.Running() || site.URL != oldURL {
			t.Errorf("after Restart: pid %d (was %d), running %v, URL %s (was %s)", site.PID(), pid, site.Running(), site.URL, oldURL)
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("the first Ghost (pid %d) is still there after Restart: %v", pid, err)
		}
		pid = site.PID()
		if got := site.GetPost(t, key, post.ID); got.Title != "Before restart" {
			t.Errorf("post after restart: %+v", got)
		}
		status, _, err := site.SessionDo(context.Background(), http.MethodGet, "/settings/", nil)
		if err != nil || status != http.StatusOK {
			t.Errorf("owner session after restart: HTTP %d, %v", status, err)
		}
		if status := stripePost(t, site, whsec, event); status != http.StatusOK {
			t.Errorf("signed customer.updated with WEBHOOK_SECRET set: HTTP %d, want 200 (log %s)", status, site.LogPath)
		}
		if got := site.Options().Env["WEBHOOK_SECRET"]; got != whsec {
			t.Errorf("Options().Env[WEBHOOK_SECRET] = %q", got)
		}
	})
	if t.Failed() {
		return
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("Ghost (pid %d) still there after the test's cleanup: %v", pid, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("content dir %s still there after the cleanup: %v", dir, err)
	}
}

func stripePost(t *testing.T, site *ghost.Site, whsec string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, site.URL+"/members/webhooks/stripe/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", signing.StripeSignature(whsec, time.Now(), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// Ghost's Admin API takes the client's tokens: the audience Ghost's own client uses, and
// refuses a token signed with another secret.
func TestAdminToken(t *testing.T) {
	t.Parallel()
	site := ghost.Shared(t)
	key := site.AdminKey()
	ctx := context.Background()
	status, _, err := site.AdminDo(ctx, key, http.MethodGet, "/posts/?limit=1", nil)
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /posts/ with the integration's key: HTTP %d, %v", status, err)
	}
	wrong := ghost.KeyID(key) + ":" + strings.Repeat("ab", 32)
	r, err := site.AdminRaw(ctx, "Ghost "+ghost.Token(wrong, "/admin/", time.Now()), http.MethodGet, "/posts/?limit=1", nil)
	if err != nil || r.Status != http.StatusUnauthorized {
		t.Errorf("token with a wrong secret: HTTP %d, %v: %s", r.Status, err, r.Body)
	}
}

// Test binaries call Install at once: all get the same finished install, and it runs the
// Node that Ghost 6.65 needs.
func TestInstallConcurrent(t *testing.T) {
	t.Parallel()
	homes := make(chan ghost.Home, 4)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			h, err := ghost.Install(context.Background(), nil)
			homes <- h
			errs <- err
		}()
	}
	var dir string
	for range 4 {
		h, err := <-homes, <-errs
		if err != nil {
			t.Fatal(err)
		}
		if dir == "" {
			dir = h.Dir
		} else if h.Dir != dir {
			t.Errorf("two installs: %s and %s", dir, h.Dir)
		}
		out, err := exec.Command(h.Node(), "--version").Output()
		if err != nil || strings.TrimSpace(string(out)) != "v"+ghost.NodeVersion {
			t.Errorf("%s --version: %q, %v", h.Node(), out, err)
		}
		if _, err := os.Stat(filepath.Join(h.Ghost(), "package.json")); err != nil {
			t.Errorf("no Ghost package in %s: %v", h.Ghost(), err)
		}
	}
}

// Production mode delivers to a loopback receiver when allowed to, through the other
// HTTP client Ghost then uses (its User-Agent names the version).
func TestProductionDelivers(t *testing.T) {
	t.Parallel()
	site := ghost.Start(t, ghost.Options{Production: true, Env: map[string]string{"security__allowWebhookInternalIPs": "true"}})
	key := site.Setup(t)
	rc := testutil.NewReceiver(t, nil)
	const secret = "harness-prod-secret"
	site.AddWebhook(t, key, "post.published", rc.URL()+"/prod", secret)
	post := site.AddPost(t, key, "Production post", "<p>p</p>", "published")
	got := rc.WaitFor(t, 1, 60*time.Second)[0]
	if ua := got.Header.Get("User-Agent"); ua != "Ghost/6.65 (https://github.com/TryGhost/Ghost)" {
		t.Errorf("User-Agent %q", ua)
	}
	if err := signing.VerifyGhost(secret, got.Header.Get("X-Ghost-Signature"), got.Body, 5*time.Minute, time.Now()); err != nil {
		t.Errorf("X-Ghost-Signature does not verify: %v", err)
	}
	if !bytes.Contains(got.Body, []byte(`"id":"`+post.ID+`"`)) {
		t.Errorf("body does not carry post %s: %.200s", post.ID, got.Body)
	}
}
