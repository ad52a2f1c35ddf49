package server_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/apikey"
	"github.com/relayhq/relay/relay/server"
	"github.com/relayhq/relay/testutil"
)

// adminAPI is a relay HTTP server on a fresh database, with one Admin API key.
type adminAPI struct {
	db   *testutil.DB
	srv  *httptest.Server
	keys *apikey.Store
	key  string // id:secret, as `relay keys create` prints it
	logs *adminLogs
}

type adminLogs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *adminLogs) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *adminLogs) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newAdminAPI serves server.New over real HTTP; kek may be nil (keys in plaintext).
func newAdminAPI(t *testing.T, kek []byte) *adminAPI {
	t.Helper()
	db := testutil.NewDB(t)
	return newAdminAPIOn(t, db, kek)
}

func newAdminAPIOn(t *testing.T, db *testutil.DB, kek []byte) *adminAPI {
	t.Helper()
	keys, err := apikey.NewStore(db.Pool, kek)
	if err != nil {
		t.Fatal(err)
	}
	_, full, err := keys.Create(context.Background(), "test client")
	if err != nil {
		t.Fatal(err)
	}
	logs := &adminLogs{}
	log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), logs)).Level(zerolog.InfoLevel)
	srv := httptest.NewServer(server.New(server.Deps{Pool: db.Pool, Log: log, Keys: keys}))
	t.Cleanup(srv.Close)
	return &adminAPI{db: db, srv: srv, keys: keys, key: full, logs: logs}
}

// b64 is base64url without padding, as jsonwebtoken (jws) writes it.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// signJWT signs header and claims, serialised in the order given, with HMAC-SHA256.
func signJWT(header, claims string, key []byte) string {
	in := b64([]byte(header)) + "." + b64([]byte(claims))
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(in))
	return in + "." + b64(mac.Sum(nil))
}

// ghostToken makes a token exactly as @tryghost/admin-api does: jsonwebtoken's
// sign({}, Buffer.from(secret, 'hex'), {keyid: id, algorithm: 'HS256', expiresIn: '5m',
// audience}), which writes the header {"alg":"HS256","typ":"JWT","kid":id} and the
// claims {"iat":now,"exp":now+300,"aud":audience}, in that order.
func ghostToken(t testing.TB, key string, iat time.Time, aud string) string {
	t.Helper()
	id, secret, ok := strings.Cut(key, ":")
	raw, err := hex.DecodeString(secret)
	if !ok || err != nil {
		t.Fatalf("key %q is not id:hexsecret", key)
	}
	header := `{"alg":"HS256","typ":"JWT","kid":"` + id + `"}`
	claims, _ := json.Marshal(struct {
		Iat int64  `json:"iat"`
		Exp int64  `json:"exp"`
		Aud string `json:"aud"`
	}{iat.Unix(), iat.Unix() + 300, aud})
	return signJWT(header, string(claims), raw)
}

// do sends a request with "Authorization: Ghost <token>" (none when token is "").
func (a *adminAPI) do(t testing.TB, method, path, token string, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Ghost "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// token is a fresh valid token of a's key.
func (a *adminAPI) token(t testing.TB) string { return ghostToken(t, a.key, time.Now(), "/admin/") }

type ghostErrors struct {
	Errors []struct {
		Message  string  `json:"message"`
		Context  *string `json:"context"`
		Type     string  `json:"type"`
		Property *string `json:"property"`
	} `json:"errors"`
}

// wantError checks a response is Ghost's error shape with this status and type.
func wantError(t testing.TB, what string, code int, body []byte, wantCode int, wantType string) string {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: status %d, want %d (body %s)", what, code, wantCode, body)
		return ""
	}
	var e ghostErrors
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 {
		t.Errorf("%s: body %s is not Ghost's error shape", what, body)
		return ""
	}
	if e.Errors[0].Type != wantType || e.Errors[0].Message == "" {
		t.Errorf("%s: error %+v, want type %s with a message", what, e.Errors[0], wantType)
	}
	if !bytes.Contains(body, []byte(`"context":`)) {
		t.Errorf("%s: error lacks Ghost's context field: %s", what, body)
	}
	return e.Errors[0].Message
}

const browsePath = "/ghost/api/admin/webhooks/"

func TestTokenMadeAsGhostsClientMakesItIsAccepted(t *testing.T) {
	a := newAdminAPI(t, nil)
	// Current clients use /admin/; clients pinned to older Ghost versions /vN/admin/.
	for _, aud := range []string{"/admin/", "/v2/admin/", "/v3/admin/", "/v4/admin/", "/v5/admin/"} {
		code, body := a.do(t, "GET", browsePath, ghostToken(t, a.key, time.Now(), aud), "")
		if code != http.StatusOK {
			t.Errorf("aud %s: status %d, want 200 (%s)", aud, code, body)
		}
	}
	// The scheme is case-insensitive in Ghost.
	req, _ := http.NewRequest("GET", a.srv.URL+browsePath, nil)
	req.Header.Set("Authorization", "ghost "+a.token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("lowercase scheme: status %d", resp.StatusCode)
	}
	// A token made a few seconds ago by a client whose clock runs slightly ahead.
	if code, body := a.do(t, "GET", browsePath, ghostToken(t, a.key, time.Now().Add(10*time.Second), "/admin/"), ""); code != http.StatusOK {
		t.Errorf("token from a clock 10s ahead: status %d (%s)", code, body)
	}
	var lastUsed *time.Time
	if err := a.db.Pool.QueryRow(context.Background(), `SELECT last_used_at FROM relay.api_keys`).Scan(&lastUsed); err != nil {
		t.Fatal(err)
	}
	if lastUsed == nil || time.Since(*lastUsed) > time.Minute {
		t.Errorf("last_used_at = %v, want just now", lastUsed)
	}
}

func TestBadTokensAreRefusedWith401(t *testing.T) {
	a := newAdminAPI(t, nil)
	id, secret, _ := strings.Cut(a.key, ":")
	raw, _ := hex.DecodeString(secret)
	now := time.Now()
	claims := func(iat, exp int64, aud string) string {
		b, _ := json.Marshal(map[string]any{"iat": iat, "exp": exp, "aud": aud})
		return string(b)
	}
	hdr := func(alg, kid string) string { return `{"alg":"` + alg + `","typ":"JWT","kid":"` + kid + `"}` }
	good := claims(now.Unix(), now.Unix()+300, "/admin/")

	otherSecret := make([]byte, 32)
	otherSecret[0] = 1
	hs512 := func() string {
		// Correctly signed, but with another algorithm than the one Ghost accepts.
		in := b64([]byte(hdr("HS512", id))) + "." + b64([]byte(good))
		return in + "." + b64(bytes.Repeat([]byte{7}, 64))
	}

	revoked := newKey(t, a)
	if _, err := a.keys.Revoke(context.Background(), strings.SplitN(revoked, ":", 2)[0]); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, auth string
	}{
		{"no Authorization header", ""},
		{"Bearer scheme", "Bearer " + a.token(t)},
		{"scheme only", "Ghost"},
		{"not a JWT", "Ghost abc.def"},
		{"wrong kid (unknown key)", "Ghost " + signJWT(hdr("HS256", "0123456789abcdef01234567"), good, raw)},
		{"kid not a key id", "Ghost " + signJWT(hdr("HS256", "../../etc"), good, raw)},
		{"missing kid", "Ghost " + signJWT(`{"alg":"HS256","typ":"JWT"}`, good, raw)},
		{"wrong secret", "Ghost " + signJWT(hdr("HS256", id), good, otherSecret)},
		{"secret used as text, not hex-decoded", "Ghost " + signJWT(hdr("HS256", id), good, []byte(secret))},
		{"tampered claims", "Ghost " + func() string {
			tok := signJWT(hdr("HS256", id), good, raw)
			parts := strings.Split(tok, ".")
			parts[1] = b64([]byte(claims(now.Unix(), now.Unix()+300, "/v9/admin/x")))
			return strings.Join(parts, ".")
		}()},
		{"wrong aud /content/", "Ghost " + ghostToken(t, a.key, now, "/content/")},
		{"wrong aud /admin/posts/", "Ghost " + ghostToken(t, a.key, now, "/admin/posts/")},
		{"no aud", "Ghost " + signJWT(hdr("HS256", id), `{"iat":`+itoa(now.Unix())+`,"exp":`+itoa(now.Unix()+300)+`}`, raw)},
		{"expired", "Ghost " + ghostToken(t, a.key, now.Add(-10*time.Minute), "/admin/")},
		{"expired just now", "Ghost " + ghostToken(t, a.key, now.Add(-6*time.Minute), "/admin/")},
		{"lives longer than 5 minutes", "Ghost " + signJWT(hdr("HS256", id), claims(now.Unix(), now.Unix()+3600, "/admin/"), raw)},
		{"no iat", "Ghost " + signJWT(hdr("HS256", id), `{"exp":`+itoa(now.Unix()+300)+`,"aud":"/admin/"}`, raw)},
		{"no exp", "Ghost " + signJWT(hdr("HS256", id), `{"iat":`+itoa(now.Unix())+`,"aud":"/admin/"}`, raw)},
		{"issued in the future", "Ghost " + ghostToken(t, a.key, now.Add(10*time.Minute), "/admin/")},
		{"alg none, no signature", "Ghost " + b64([]byte(hdr("none", id))) + "." + b64([]byte(good)) + "."},
		{"alg none, with the right signature", "Ghost " + func() string {
			tok := signJWT(hdr("none", id), good, raw)
			return tok
		}()},
		{"alg HS512", "Ghost " + hs512()},
		{"revoked key", "Ghost " + ghostToken(t, revoked, now, "/admin/")},
	}
	for _, c := range cases {
		req, _ := http.NewRequest("GET", a.srv.URL+browsePath, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		wantError(t, c.name, resp.StatusCode, body, http.StatusUnauthorized, "UnauthorizedError")
	}
	// Every route of both APIs is behind the same check.
	for _, r := range [][2]string{
		{"POST", "/ghost/api/admin/webhooks/"}, {"PUT", "/ghost/api/admin/webhooks/0123456789abcdef01234567/"},
		{"DELETE", "/ghost/api/admin/webhooks/0123456789abcdef01234567/"}, {"GET", "/relay/v1/events"},
		{"GET", "/relay/v1/events/9b2c1f9e-0000-4000-8000-000000000000"}, {"GET", "/relay/v1/deliveries"},
		{"POST", "/relay/v1/deliveries/1/redeliver"},
	} {
		code, body := a.do(t, r[0], r[1], "", "")
		wantError(t, r[0]+" "+r[1]+" without a token", code, body, http.StatusUnauthorized, "UnauthorizedError")
	}
	// Refusals are logged with their reason, never with the token or the secret.
	if logs := a.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, a.token(t)[:40]) {
		t.Errorf("logs contain the key's secret or a token")
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

func newKey(t testing.TB, a *adminAPI) string {
	t.Helper()
	_, full, err := a.keys.Create(context.Background(), "another")
	if err != nil {
		t.Fatal(err)
	}
	return full
}

func TestRevocationTakesEffectOnTheNextRequest(t *testing.T) {
	a := newAdminAPI(t, nil)
	tok := a.token(t)
	if code, _ := a.do(t, "GET", browsePath, tok, ""); code != http.StatusOK {
		t.Fatalf("before revocation: %d", code)
	}
	if _, err := a.keys.Revoke(context.Background(), strings.SplitN(a.key, ":", 2)[0]); err != nil {
		t.Fatal(err)
	}
	code, body := a.do(t, "GET", browsePath, tok, "")
	wantError(t, "same token after revocation", code, body, http.StatusUnauthorized, "UnauthorizedError")
}

func TestEncryptedKeysAreUnusableWithoutTheirKEK(t *testing.T) {
	kek, err := apikey.ParseKEK(strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	a := newAdminAPI(t, kek)
	if code, body := a.do(t, "GET", browsePath, a.token(t), ""); code != http.StatusOK {
		t.Fatalf("encrypted key refused by its own relay: %d %s", code, body)
	}
	// What a database reader sees: no plaintext, and ciphertext that is not the secret.
	_, secret, _ := strings.Cut(a.key, ":")
	raw, _ := hex.DecodeString(secret)
	var plain *string
	var sealed []byte
	if err := a.db.Pool.QueryRow(context.Background(), `SELECT secret_plain, secret_sealed FROM relay.api_keys`).Scan(&plain, &sealed); err != nil {
		t.Fatal(err)
	}
	if plain != nil || len(sealed) == 0 || bytes.Contains(sealed, raw) || bytes.Contains(sealed, []byte(secret)) {
		t.Fatalf("sealed key stored as plain=%v sealed=%x", plain, sealed)
	}
	// The same database served by a relay without the KEK, or with another one.
	other, _ := apikey.ParseKEK(strings.Repeat("cd", 32))
	for name, k := range map[string][]byte{"no KEK": nil, "other KEK": other} {
		keys, err := apikey.NewStore(a.db.Pool, k)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(server.New(server.Deps{Pool: a.db.Pool, Log: zerolog.Nop(), Keys: keys}))
		req, _ := http.NewRequest("GET", srv.URL+browsePath, nil)
		req.Header.Set("Authorization", "Ghost "+a.token(t))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		wantError(t, name, resp.StatusCode, body, http.StatusUnauthorized, "UnauthorizedError")
	}
	// Base64 is accepted too; short or passphrase-like keys are not.
	if _, err := apikey.ParseKEK(base64.StdEncoding.EncodeToString(kek)); err != nil {
		t.Errorf("base64 KEK refused: %v", err)
	}
	for _, bad := range []string{"hunter2", strings.Repeat("ab", 16), strings.Repeat("zz", 32)} {
		if _, err := apikey.ParseKEK(bad); err == nil {
			t.Errorf("KEK %q accepted", bad)
		}
	}
}
