package console_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/webhook"
)

// addHook adds a webhook of the operator's straight through the webhook store, as the
// CLI does.
func addHook(t testing.TB, e *env, in webhook.Input) webhook.Webhook {
	t.Helper()
	wh, err := webhook.Store{Pool: e.db.Pool}.Add(context.Background(), in)
	if err != nil {
		t.Fatal(err)
	}
	return wh
}

func ptr[T any](v T) *T { return &v }

// fixture makes one of everything a page can show: a webhook with a secret and a token
// in its URL, an event, a delivery with an attempt. It returns the paths of every page.
func fixture(t testing.TB, e *env) (hook webhook.Webhook, deliveryID int64, eventID string, pages []string) {
	t.Helper()
	hook = addHook(t, e, webhook.Input{Event: ptr("post.published"), TargetURL: ptr("https://hooks.example.com/in?token=tok-SECRET-in-url"),
		Name: webhook.Value("Search index"), Secret: webhook.Value("whsec_c2VjcmV0LW9mLXRoZS1maXh0dXJlLXdlYmhvb2s=")})
	eventID = emit(t, e.db, "post.published", `{"post":{"current":{"id":"1"},"previous":{}}}`)
	ctx := context.Background()
	if err := e.db.Pool.QueryRow(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, last_status_code, last_error)
		VALUES ($1, $2, 'failed', 1, 503, 'HTTP 503') RETURNING id`, eventID, hook.ID).Scan(&deliveryID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Pool.Exec(ctx, `INSERT INTO relay.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error, response_excerpt, relay_instance)
		VALUES ($1, 1, now(), 12, 503, 'HTTP 503', 'down', 'test-relay')`, deliveryID); err != nil {
		t.Fatal(err)
	}
	id := hook.ID
	pages = []string{"/ui/", "/ui/webhooks", "/ui/webhooks/new", "/ui/webhooks/" + id, "/ui/webhooks/" + id + "/edit",
		"/ui/webhooks/" + id + "/rotate-secret", "/ui/webhooks/" + id + "/delete", "/ui/deliveries",
		"/ui/deliveries?webhook=" + id + "&status=failed", fmt.Sprintf("/ui/deliveries/%d", deliveryID),
		fmt.Sprintf("/ui/deliveries/%d/skip", deliveryID), "/ui/events",
		"/ui/events?event=post.*", "/ui/events/" + eventID, "/ui/events/" + eventID + "/body", "/ui/stripe", "/ui/ghost"}
	return hook, deliveryID, eventID, pages
}

// actions are every form that changes something, with the fields it needs.
func actions(hookID string, deliveryID int64) map[string]url.Values {
	return map[string]url.Values{
		"/ui/webhooks":                                         {"event": {"post.added"}, "target_url": {"https://x.example.com/"}, "secret_mode": {"none"}},
		"/ui/webhooks/" + hookID:                               {"event": {"page.added"}, "target_url": {"https://y.example.com/"}, "secret_mode": {"keep"}},
		"/ui/webhooks/" + hookID + "/disable":                  {},
		"/ui/webhooks/" + hookID + "/enable":                   {},
		"/ui/webhooks/" + hookID + "/rotate-secret":            {},
		"/ui/webhooks/" + hookID + "/delete":                   {},
		fmt.Sprintf("/ui/deliveries/%d/redeliver", deliveryID): {},
		fmt.Sprintf("/ui/deliveries/%d/skip", deliveryID):      {},
		"/ui/sign-out":                                         {},
	}
}

// nothingChanged fails if any action above took effect.
func nothingChanged(t *testing.T, e *env, hook webhook.Webhook, deliveryID int64) {
	t.Helper()
	var hooks, changes int
	var ev, target, status, secret, dstatus string
	ctx := context.Background()
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.webhooks`).Scan(&hooks); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Pool.QueryRow(ctx, `SELECT event, target_url, status, secret FROM relay.webhooks WHERE id = $1`, hook.ID).
		Scan(&ev, &target, &status, &secret); err != nil {
		t.Fatalf("the webhook is gone: %v", err)
	}
	if err := e.db.Pool.QueryRow(ctx, `SELECT status FROM relay.deliveries WHERE id = $1`, deliveryID).Scan(&dstatus); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.console_changes WHERE action NOT IN ('signed in')`).Scan(&changes); err != nil {
		t.Fatal(err)
	}
	if hooks != 1 || ev != hook.Event || target != hook.TargetURL || status != "active" || secret != *hook.Secret || dstatus != "failed" || changes != 0 {
		t.Errorf("a refused request changed something: %d webhooks, %s %s %s, delivery %s, %d recorded changes", hooks, ev, target, status, dstatus, changes)
	}
}

// Without a session, every page sends the browser to sign in (and back afterwards),
// and every action is refused without changing anything; a made-up cookie is no session.
func TestNoPageOrActionWithoutASession(t *testing.T) {
	e := newEnv(t)
	hook, deliveryID, _, pages := fixture(t, e)
	for _, cookie := range []string{"", "relay_console=" + base64.RawURLEncoding.EncodeToString(make([]byte, 32)), "relay_console=garbage"} {
		c := e.client(t)
		for _, p := range append(pages, "/ui/no-such-page") {
			req, _ := http.NewRequest("GET", e.srv.URL+p, nil)
			if cookie != "" {
				req.Header.Set("Cookie", cookie)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "/ui/sign-in") {
				t.Errorf("GET %s (cookie %q): %d Location %q, want 303 to the sign-in page", p, cookie, resp.StatusCode, loc)
			}
		}
		for p, form := range actions(hook.ID, deliveryID) {
			req, _ := http.NewRequest("POST", e.srv.URL+p, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if cookie != "" {
				req.Header.Set("Cookie", cookie)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s (cookie %q): %d, want 403", p, cookie, resp.StatusCode)
			}
		}
	}
	// After sign-in the next parameter brings the operator back, and only inside the
	// console.
	c := e.client(t)
	code, _, resp := get(t, c, e.srv.URL+"/ui/webhooks/"+hook.ID)
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/sign-in?next=%2Fui%2Fwebhooks%2F"+hook.ID {
		t.Fatalf("redirect to sign-in: %d %q", code, resp.Header.Get("Location"))
	}
	for next, want := range map[string]string{"/ui/webhooks/" + hook.ID: "/ui/webhooks/" + hook.ID, "//evil.example/": "/ui/",
		"https://evil.example/ui/": "/ui/", "/ui//evil.example": "/ui/", "/ui/\\evil": "/ui/", "/elsewhere": "/ui/"} {
		c := e.client(t)
		_, page, _ := get(t, c, e.srv.URL+"/ui/sign-in?next="+url.QueryEscape(next))
		code, _, resp := post(t, c, e.srv.URL+"/ui/sign-in", url.Values{"csrf": {csrfOf(t, page)}, "key": {e.key}, "next": {next}})
		if code != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("sign-in with next %q: %d to %q, want %q", next, code, resp.Header.Get("Location"), want)
		}
	}
	nothingChanged(t, e, hook, deliveryID)
}

// A form without this session's CSRF token (none, a wrong one, another session's, or
// one a cross-site request carries) is refused and changes nothing; the sign-in form
// needs its own token too.
func TestFormsWithoutTheSessionsCSRFTokenAreRefused(t *testing.T) {
	e := newEnv(t)
	hook, deliveryID, _, _ := fixture(t, e)
	c := e.client(t)
	mine := e.signIn(t, c, e.key)
	other := e.signIn(t, e.client(t), e.key)
	if other == mine {
		t.Fatal("two sessions share a CSRF token")
	}
	for p, form := range actions(hook.ID, deliveryID) {
		for name, token := range map[string]string{"none": "", "wrong": strings.Repeat("A", len(mine)), "another session's": other,
			"truncated": mine[:len(mine)-1]} {
			f := url.Values{}
			for k, v := range form {
				f[k] = v
			}
			if token != "" {
				f.Set("csrf", token)
			}
			code, body, _ := post(t, c, e.srv.URL+p, f)
			if code != http.StatusForbidden || !strings.Contains(body, "security token") {
				t.Errorf("POST %s with %s token: %d, want 403 saying why", p, name, code)
			}
		}
		// The right token, but the browser says another site sent the form.
		f := url.Values{"csrf": {mine}}
		for k, v := range form {
			f[k] = v
		}
		req, _ := http.NewRequest("POST", e.srv.URL+p, strings.NewReader(f.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("cross-site POST %s: %d, want 403", p, resp.StatusCode)
		}
	}
	nothingChanged(t, e, hook, deliveryID)
	if code, _, _ := get(t, c, e.srv.URL+"/ui/webhooks"); code != http.StatusOK {
		t.Errorf("still signed in after the refused sign-out? %d", code)
	}

	// The sign-in form: without its token, or with a token but not the cookie it pairs
	// with, no session starts.
	fresh := e.client(t)
	_, page, _ := get(t, fresh, e.srv.URL+"/ui/sign-in")
	token := csrfOf(t, page)
	for name, form := range map[string]url.Values{"no token": {"key": {e.key}}, "another token": {"key": {e.key}, "csrf": {"x" + token[1:]}}} {
		code, _, resp := post(t, fresh, e.srv.URL+"/ui/sign-in", form)
		if code != http.StatusForbidden || resp.Header.Get("Set-Cookie") != "" && strings.Contains(resp.Header.Get("Set-Cookie"), "relay_console=") {
			t.Errorf("sign-in with %s: %d, cookies %v", name, code, resp.Header.Values("Set-Cookie"))
		}
	}
	noCookie := e.client(t)
	code, _, _ := post(t, noCookie, e.srv.URL+"/ui/sign-in", url.Values{"key": {e.key}, "csrf": {token}})
	if code != http.StatusForbidden {
		t.Errorf("sign-in with a token but no sign-in cookie: %d", code)
	}
	var sessions int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.console_sessions`).Scan(&sessions); err != nil || sessions != 2 {
		t.Errorf("%d sessions (%v), want the 2 signed in", sessions, err)
	}
}

// The session cookie is HttpOnly, SameSite=Strict, scoped to /ui/, lasts the session's
// lifetime, and is Secure when the relay is reached over TLS or behind a proxy that says
// so; the database keeps only a hash of it.
func TestSessionCookieFlags(t *testing.T) {
	e := newEnv(t)
	for _, https := range []bool{false, true} {
		c := e.client(t)
		req, _ := http.NewRequest("GET", e.srv.URL+"/ui/sign-in", nil)
		if https {
			req.Header.Set("X-Forwarded-Proto", "https")
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var page strings.Builder
		buf := make([]byte, 64<<10)
		n, _ := resp.Body.Read(buf)
		page.Write(buf[:n])
		resp.Body.Close()
		// The client's jar keeps only non-Secure cookies over http; send the sign-in
		// cookie by hand.
		var signinCookie *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == "relay_console_signin" {
				signinCookie = ck
			}
		}
		if signinCookie == nil || !signinCookie.HttpOnly || signinCookie.SameSite != http.SameSiteStrictMode || signinCookie.Secure != https {
			t.Fatalf("https=%v: sign-in cookie %+v", https, signinCookie)
		}
		form := url.Values{"csrf": {csrfOf(t, page.String())}, "key": {e.key}}
		req, _ = http.NewRequest("POST", e.srv.URL+"/ui/sign-in", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: signinCookie.Name, Value: signinCookie.Value})
		if https {
			req.Header.Set("X-Forwarded-Proto", "https")
		}
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		var session *http.Cookie
		for _, ck := range resp.Cookies() {
			if ck.Name == "relay_console" {
				session = ck
			}
		}
		if resp.StatusCode != http.StatusSeeOther || session == nil {
			t.Fatalf("https=%v: sign-in %d, no session cookie", https, resp.StatusCode)
		}
		if !session.HttpOnly || session.SameSite != http.SameSiteStrictMode || session.Path != "/ui/" || session.Secure != https ||
			session.MaxAge != int((12*time.Hour).Seconds()) || session.Domain != "" {
			t.Errorf("https=%v: session cookie %+v; want HttpOnly, SameSite=Strict, Path=/ui/, Max-Age 12h, Secure only over https", https, session)
		}
		raw := resp.Header.Get("Set-Cookie")
		for _, want := range []string{"HttpOnly", "SameSite=Strict", "Path=/ui/"} {
			if !strings.Contains(strings.Join(resp.Header.Values("Set-Cookie"), "\n"), want) {
				t.Errorf("Set-Cookie %q lacks %s", raw, want)
			}
		}
		token, err := base64.RawURLEncoding.DecodeString(session.Value)
		if err != nil || len(token) != 32 {
			t.Fatalf("session token %q: %d bytes (%v)", session.Value, len(token), err)
		}
		sum := sha256.Sum256(token)
		var stored []byte
		var ttl time.Duration
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT token_hash, expires_at - created_at FROM relay.console_sessions
			WHERE token_hash = $1`, sum[:]).Scan(&stored, &ttl); err != nil {
			t.Fatalf("the session's row is not found by the token's hash: %v", err)
		}
		if ttl != 12*time.Hour {
			t.Errorf("session lasts %v, want 12h", ttl)
		}
		var plain int
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.console_sessions
			WHERE token_hash = $1 OR encode(token_hash, 'hex') = $2`, token, hex.EncodeToString(token)).Scan(&plain); err != nil || plain != 0 {
			t.Errorf("the token itself is stored (%d, %v)", plain, err)
		}
	}
}

// adminToken signs a Ghost Admin API token with a key, as @tryghost/admin-api does.
func adminToken(t testing.TB, key string) string {
	t.Helper()
	id, secretHex, _ := strings.Cut(key, ":")
	secret, err := hex.DecodeString(secretHex)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	now := time.Now().Unix()
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT","kid":"` + id + `"}`))
	claims := enc.EncodeToString([]byte(fmt.Sprintf(`{"iat":%d,"exp":%d,"aud":"/admin/"}`, now, now+300)))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(head + "." + claims))
	return head + "." + claims + "." + enc.EncodeToString(mac.Sum(nil))
}

// An integration's key, scoped to its own webhooks in the Admin API, does not sign in to
// the console (which would give it every webhook and every delivery); a console key does
// not work in the Admin API. A key that is not a key, or a revoked one, signs in nowhere.
func TestAnIntegrationKeyCannotSignInAndAConsoleKeyIsNoAPIKey(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	_, integration, err := e.keys.Create(ctx, "zapier")
	if err != nil {
		t.Fatal(err)
	}
	code, body, resp := e.trySignIn(t, e.client(t), integration)
	if code != http.StatusForbidden || !strings.Contains(body, "relay keys create --console") || hasSessionCookie(resp) {
		t.Errorf("an integration's key at sign-in: %d, session cookie %v\n%s", code, hasSessionCookie(resp), clip(body))
	}
	id, _, _ := strings.Cut(e.key, ":")
	for name, key := range map[string]string{"garbage": "not a key", "wrong secret": id + ":" + strings.Repeat("0", 64),
		"id only": id, "empty": ""} {
		code, body, resp := e.trySignIn(t, e.client(t), key)
		if code != http.StatusUnauthorized || hasSessionCookie(resp) || !strings.Contains(body, "not valid") {
			t.Errorf("%s key: %d, session cookie %v", name, code, hasSessionCookie(resp))
		}
	}
	var sessions int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.console_sessions`).Scan(&sessions); err != nil || sessions != 0 {
		t.Errorf("%d sessions after refused sign-ins (%v)", sessions, err)
	}
	for key, want := range map[string]int{integration: http.StatusOK, e.key: http.StatusUnauthorized} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/ghost/api/admin/webhooks/", nil)
		req.Header.Set("Authorization", "Ghost "+adminToken(t, key))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("Admin API with the %s key: %d, want %d", map[bool]string{true: "console", false: "integration"}[key == e.key], resp.StatusCode, want)
		}
	}
}

func hasSessionCookie(resp *http.Response) bool {
	for _, ck := range resp.Cookies() {
		if ck.Name == "relay_console" && ck.Value != "" {
			return true
		}
	}
	return false
}

// A session ends at the next request once its key is revoked, and once it expires;
// signing out ends it too, and its cookie with it.
func TestARevokedKeysSessionEndsAndSessionsExpire(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c := e.client(t)
	csrf := e.signIn(t, c, e.key)
	if code, _, _ := get(t, c, e.srv.URL+"/ui/webhooks"); code != http.StatusOK {
		t.Fatalf("signed in: %d", code)
	}
	if _, err := e.keys.Revoke(ctx, e.keyID); err != nil {
		t.Fatal(err)
	}
	if code, _, resp := get(t, c, e.srv.URL+"/ui/webhooks"); code != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/ui/sign-in") {
		t.Errorf("after revoking the key: %d %q, want 303 to sign in", code, resp.Header.Get("Location"))
	}
	if code, _, _ := post(t, c, e.srv.URL+"/ui/webhooks", url.Values{"csrf": {csrf}, "event": {"post.added"},
		"target_url": {"https://x.example/"}, "secret_mode": {"none"}}); code != http.StatusForbidden {
		t.Errorf("an action after revoking the key: %d, want 403", code)
	}
	if code, _, _ := e.trySignIn(t, e.client(t), e.key); code != http.StatusUnauthorized {
		t.Errorf("signing in with the revoked key: %d, want 401", code)
	}

	_, key2, err := e.keys.CreateConsole(ctx, "Grace Hopper")
	if err != nil {
		t.Fatal(err)
	}
	c = e.client(t)
	csrf = e.signIn(t, c, key2)
	if _, err := e.db.Pool.Exec(ctx, `UPDATE relay.console_sessions SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, c, e.srv.URL+"/ui/"); code != http.StatusSeeOther {
		t.Errorf("after the session expired: %d, want 303 to sign in", code)
	}

	c = e.client(t)
	csrf = e.signIn(t, c, key2)
	code, _, resp := post(t, c, e.srv.URL+"/ui/sign-out", url.Values{"csrf": {csrf}})
	if code != http.StatusSeeOther || resp.Header.Get("Location") != "/ui/sign-in?signed_out=1" {
		t.Errorf("sign-out: %d %q", code, resp.Header.Get("Location"))
	}
	cleared := false
	for _, ck := range resp.Cookies() {
		if ck.Name == "relay_console" && ck.MaxAge < 0 {
			cleared = true
		}
	}
	if !cleared {
		t.Errorf("sign-out did not clear the cookie: %v", resp.Header.Values("Set-Cookie"))
	}
	if code, _, _ := get(t, c, e.srv.URL+"/ui/"); code != http.StatusSeeOther {
		t.Errorf("after sign-out: %d, want 303 to sign in", code)
	}
	var left int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.console_sessions WHERE expires_at > now()`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d live sessions after sign-out (%v)", left, err)
	}
}

// Every answer carries a strict Content-Security-Policy and the headers that keep the
// console out of frames and its URLs out of other sites' logs.
func TestSecurityHeadersOnEveryAnswer(t *testing.T) {
	e := newEnv(t)
	_, _, _, pages := fixture(t, e)
	c := e.client(t)
	e.signIn(t, c, e.key)
	for _, p := range append(pages, "/ui/sign-in", "/ui/static/console.css", "/ui/static/console.js", "/ui/nowhere") {
		_, _, resp := get(t, c, e.srv.URL+p)
		h := resp.Header
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") ||
			strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("%s: Content-Security-Policy %q", p, csp)
		}
		if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" || h.Get("Referrer-Policy") == "" {
			t.Errorf("%s: headers %v", p, h)
		}
		if !strings.HasPrefix(p, "/ui/static/") && h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", p, h.Get("Cache-Control"))
		}
	}
	_, _, resp := get(t, c, e.srv.URL+"/ui/static/")
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("static directory listing: %d", resp.StatusCode)
	}
}

// Secrets are shown once, on the answer that made them, and never again: not the
// webhook's (generated, set or rotated), not a token in its URL, not the console key.
func TestSecretsNeverAppearInAnyPageAfterCreation(t *testing.T) {
	e := newEnv(t)
	hook, _, _, pages := fixture(t, e)
	c := e.client(t)
	csrf := e.signIn(t, c, e.key)
	code, shown, _ := post(t, c, e.srv.URL+"/ui/webhooks", url.Values{"csrf": {csrf}, "event": {"post.*"},
		"target_url": {"https://hooks.example.com/generated?api_key=key-SECRET-2"}, "secret_mode": {"generate"}})
	var generatedID, generated string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT id, secret FROM relay.webhooks WHERE event = 'post.*'`).Scan(&generatedID, &generated); err != nil {
		t.Fatal(err)
	}
	if code != http.StatusCreated || !strings.HasPrefix(generated, "whsec_") || !strings.Contains(html.UnescapeString(shown), generated) {
		t.Fatalf("add with a generated secret: %d; the answer shows it: %v", code, strings.Contains(shown, generated))
	}
	code, rotated, _ := post(t, c, e.srv.URL+"/ui/webhooks/"+hook.ID+"/rotate-secret", url.Values{"csrf": {csrf}})
	var newSecret string
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT secret FROM relay.webhooks WHERE id = $1`, hook.ID).Scan(&newSecret); err != nil {
		t.Fatal(err)
	}
	rotated = html.UnescapeString(rotated)
	if code != http.StatusOK || newSecret == *hook.Secret || !strings.Contains(rotated, newSecret) || strings.Contains(rotated, *hook.Secret) {
		t.Fatalf("rotate: %d; shows the new secret %v", code, strings.Contains(rotated, newSecret))
	}
	_, keySecret, _ := strings.Cut(e.key, ":")
	secrets := []string{generated, strings.TrimPrefix(generated, "whsec_"), newSecret, strings.TrimPrefix(newSecret, "whsec_"),
		*hook.Secret, strings.TrimPrefix(*hook.Secret, "whsec_"), "tok-SECRET-in-url", "key-SECRET-2", keySecret}
	pages = append(pages, "/ui/webhooks/"+generatedID, "/ui/webhooks/"+generatedID+"/edit")
	for _, p := range pages {
		code, body, _ := get(t, c, e.srv.URL+p)
		if code != http.StatusOK {
			t.Errorf("%s: %d", p, code)
		}
		// As the browser reads it: html/template writes + as &#43;, for one.
		text := html.UnescapeString(body)
		for _, s := range secrets {
			if strings.Contains(body, s) || strings.Contains(text, s) {
				t.Errorf("%s shows a secret (%.12s…)", p, s)
			}
		}
	}
	// A failed add echoes nothing secret back either.
	_, body, _ := post(t, c, e.srv.URL+"/ui/webhooks", url.Values{"csrf": {csrf}, "event": {"post.added"},
		"target_url": {"not a url"}, "secret_mode": {"set"}, "secret": {"typed-SECRET-3"}})
	if strings.Contains(html.UnescapeString(body), "typed-SECRET-3") {
		t.Error("a refused form shows the secret typed into it")
	}
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
