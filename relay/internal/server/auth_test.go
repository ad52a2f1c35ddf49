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
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/apikey"
	"github.com/relayhq/relay/relay/internal/sealbox"
	"github.com/relayhq/relay/relay/internal/server"
	"github.com/relayhq/relay/testutil"
)

// adminAPI is a relay HTTP server on a fresh database, with one integration and its
// Admin API key.
type adminAPI struct {
	db          *testutil.DB
	srv         *httptest.Server
	keys        *apikey.Store
	key         string // id:secret, as `relay keys create` prints it
	integration string // the key's integration id
	logs        *adminLogs
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
	k, full, err := keys.Create(context.Background(), "test client")
	if err != nil {
		t.Fatal(err)
	}
	logs := &adminLogs{}
	log := zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), logs)).Level(zerolog.InfoLevel)
	srv := httptest.NewServer(server.New(server.Deps{Pool: db.Pool, Log: log, Keys: keys}))
	t.Cleanup(srv.Close)
	return &adminAPI{db: db, srv: srv, keys: keys, key: full, integration: k.Integration.ID, logs: logs}
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
	auth := ""
	if token != "" {
		auth = "Ghost " + token
	}
	return a.doAuth(t, method, path, auth, body)
}

// doAuth sends a request with this Authorization header (none when "") and, with a
// body, Content-Type: application/json, as Ghost's clients send it.
func (a *adminAPI) doAuth(t testing.TB, method, path, auth string, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, a.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
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

// ghostError is one error object as Ghost serialises it; pointers are JSON null.
type ghostError struct {
	Message        string          `json:"message"`
	Context        *string         `json:"context"`
	Type           string          `json:"type"`
	Details        json.RawMessage `json:"details"`
	Property       *string         `json:"property"`
	Help           *string         `json:"help"`
	Code           *string         `json:"code"`
	ID             string          `json:"id"`
	GhostErrorCode *string         `json:"ghostErrorCode"`
}

// ghostErrorKeys are the keys of every error object, in Ghost's order.
var ghostErrorKeys = []string{"message", "context", "type", "details", "property", "help", "code", "id", "ghostErrorCode"}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// wantError checks a response is one Ghost error with this status and type, with
// every key of Ghost's error object (in Ghost's order), a random UUID id and a null
// ghostErrorCode, and returns it.
func wantError(t testing.TB, what string, code int, body []byte, wantCode int, wantType string) ghostError {
	t.Helper()
	if code != wantCode {
		t.Errorf("%s: status %d, want %d (body %s)", what, code, wantCode, body)
		return ghostError{}
	}
	var e struct {
		Errors []json.RawMessage `json:"errors"`
	}
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) != 1 {
		t.Errorf("%s: body %s is not Ghost's error shape", what, body)
		return ghostError{}
	}
	dec := json.NewDecoder(bytes.NewReader(e.Errors[0]))
	var keys []string
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Errorf("%s: error is not an object: %s", what, e.Errors[0])
		return ghostError{}
	}
	for dec.More() {
		k, _ := dec.Token()
		keys = append(keys, k.(string))
		var skip json.RawMessage
		_ = dec.Decode(&skip)
	}
	if strings.Join(keys, ",") != strings.Join(ghostErrorKeys, ",") {
		t.Errorf("%s: error keys %v, want Ghost's %v", what, keys, ghostErrorKeys)
	}
	var ge ghostError
	if err := json.Unmarshal(e.Errors[0], &ge); err != nil {
		t.Errorf("%s: %v", what, err)
	}
	if ge.Type != wantType || ge.Message == "" {
		t.Errorf("%s: error %s, want type %s with a message", what, e.Errors[0], wantType)
	}
	if !uuidRE.MatchString(ge.ID) || ge.GhostErrorCode != nil {
		t.Errorf("%s: id %q, ghostErrorCode %v: want a random UUID and null", what, ge.ID, ge.GhostErrorCode)
	}
	return ge
}

// ghostAnswer is what Ghost answers, field by field ("" is null; details compared as
// JSON when set).
type ghostAnswer struct {
	status                                      int
	typ, message, context, property, help, code string
	details                                     string
}

// wantGhostAnswer checks a response is exactly want, as the real Ghost 6.65 answered it.
func wantGhostAnswer(t testing.TB, what string, code int, body []byte, want ghostAnswer) {
	t.Helper()
	ge := wantError(t, what, code, body, want.status, want.typ)
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	got := ghostAnswer{status: code, typ: ge.Type, message: ge.Message, context: str(ge.Context),
		property: str(ge.Property), help: str(ge.Help), code: str(ge.Code)}
	wantCmp := want
	wantCmp.details = ""
	if got != wantCmp {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, wantCmp)
	}
	switch {
	case want.details == "" && string(ge.Details) != "null":
		t.Errorf("%s: details %s, want null", what, ge.Details)
	case want.details != "" && !jsonEqual(string(ge.Details), want.details):
		t.Errorf("%s: details %s, want %s", what, ge.Details, want.details)
	}
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xb, _ := json.Marshal(x)
	yb, _ := json.Marshal(y)
	return bytes.Equal(xb, yb)
}

const browsePath = "/ghost/api/admin/webhooks/"

func TestTokensGhostAcceptsAreAccepted(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	id, secret, _ := strings.Cut(a.key, ":")
	raw, _ := hex.DecodeString(secret)
	now := time.Now().Unix()
	hdr := `{"alg":"HS256","typ":"JWT","kid":"` + id + `"}`
	claims := func(c string) string { return signJWT(hdr, c, raw) }
	cases := []struct{ name, path, auth string }{
		{"as @tryghost/admin-api makes it", browsePath, "Ghost " + a.token(t)},
		{"lowercase scheme", browsePath, "ghost " + a.token(t)},
		{"anything after the token and a space", browsePath, "Ghost " + a.token(t) + " trailing"},
		{"no exp", browsePath, "Ghost " + claims(`{"iat":`+itoa(now)+`,"aud":"/admin/"}`)},
		{"exp an hour after iat (maxAge still ends it at 5 minutes)", browsePath, "Ghost " + claims(`{"iat":`+itoa(now)+`,"exp":`+itoa(now+3600)+`,"aud":"/admin/"}`)},
		{"issued 4 minutes ago", browsePath, "Ghost " + ghostToken(t, a.key, time.Now().Add(-4*time.Minute), "/admin/")},
		{"issued 2 minutes ahead (a fast client clock)", browsePath, "Ghost " + ghostToken(t, a.key, time.Now().Add(2*time.Minute), "/admin/")},
		{"nbf a minute ago", browsePath, "Ghost " + claims(`{"iat":`+itoa(now)+`,"nbf":`+itoa(now-60)+`,"aud":"/admin/"}`)},
		{"no typ in the header", browsePath, "Ghost " + signJWT(`{"alg":"HS256","kid":"`+id+`"}`, `{"iat":`+itoa(now)+`,"aud":"/admin/"}`, raw)},
		{"aud in a list", browsePath, "Ghost " + claims(`{"iat":`+itoa(now)+`,"aud":["wrong","/admin/"]}`)},
		{"v3 client on the v3 path", "/ghost/api/v3/admin/webhooks/", "Ghost " + ghostToken(t, a.key, time.Now(), "/v3/admin/")},
		{"canary client on the canary path", "/ghost/api/canary/admin/webhooks/", "Ghost " + ghostToken(t, a.key, time.Now(), "/canary/admin/")},
		{"the audit API with /admin/", "/relay/v1/events", "Ghost " + a.token(t)},
	}
	// On the unversioned API Ghost takes any aud ending in admin or admin/.
	for _, aud := range []string{"admin", "/admin", "admin/", "/v2/admin/", "/v5/admin/", "/v6/admin/", "/canary/admin/",
		"https://example.com/ghost/api/admin/", "/ghost/api/v4/admin/", "xadmin/"} {
		cases = append(cases, struct{ name, path, auth string }{"aud " + aud, browsePath, "Ghost " + ghostToken(t, a.key, time.Now(), aud)})
	}
	for _, c := range cases {
		if code, body := a.doAuth(t, "GET", c.path, c.auth, ""); code != http.StatusOK {
			t.Errorf("%s: status %d, want 200 (%s)", c.name, code, body)
		}
	}
	var lastUsed *time.Time
	if err := a.db.Pool.QueryRow(context.Background(), `SELECT last_used_at FROM relay.api_keys`).Scan(&lastUsed); err != nil {
		t.Fatal(err)
	}
	if lastUsed == nil || time.Since(*lastUsed) > time.Minute {
		t.Errorf("last_used_at = %v, want just now", lastUsed)
	}
}

// TestTokensGhostRefusesAreRefusedWithGhostsAnswer: each refusal has Ghost 6.65's
// status, type, message and code (as captured from the real Ghost).
func TestTokensGhostRefusesAreRefusedWithGhostsAnswer(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	id, secret, _ := strings.Cut(a.key, ":")
	raw, _ := hex.DecodeString(secret)
	now := time.Now().Unix()
	hdr := func(alg, kid string) string { return `{"alg":"` + alg + `","typ":"JWT","kid":"` + kid + `"}` }
	good := `{"iat":` + itoa(now) + `,"exp":` + itoa(now+300) + `,"aud":"/admin/"}`
	claims := func(c string) string { return signJWT(hdr("HS256", id), c, raw) }
	otherSecret := bytes.Repeat([]byte{1}, 32)
	revoked := newKey(t, a)
	if _, err := a.keys.Revoke(context.Background(), strings.SplitN(revoked, ":", 2)[0]); err != nil {
		t.Fatal(err)
	}
	unauthorized := func(msg, code string) ghostAnswer {
		return ghostAnswer{status: 401, typ: "UnauthorizedError", message: msg, code: code}
	}
	invalid := func(reason string) ghostAnswer { return unauthorized("Invalid token: "+reason, "INVALID_JWT") }
	badFormat := unauthorized(`Authorization header format is "Authorization: Ghost [token]"`, "INVALID_AUTH_HEADER")
	malformed := ghostAnswer{status: 400, typ: "BadRequestError", message: "Invalid token", code: "INVALID_JWT"}
	audAdmin := invalid(`jwt audience invalid. expected: /\/?admin\/?$/`)

	cases := []struct {
		name, path, auth string
		want             ghostAnswer
	}{
		{"no Authorization header", browsePath, "", ghostAnswer{status: 403, typ: "NoPermissionError", message: "Authorization failed",
			context: "Unable to determine the authenticated user or integration. Check that cookies are being passed through if using session authentication."}},
		{"scheme only", browsePath, "Ghost", badFormat},
		{"Bearer scheme", browsePath, "Bearer " + a.token(t), badFormat},
		{"two spaces after Ghost", browsePath, "Ghost  " + a.token(t), badFormat},
		{"not a JWT", browsePath, "Ghost abc", malformed},
		{"header not JSON", browsePath, "Ghost " + b64([]byte("{nope")) + "." + b64([]byte(good)) + ".c2ln", malformed},
		{"header null", browsePath, "Ghost " + b64([]byte("null")) + "." + b64([]byte(good)) + ".c2ln", malformed},
		{"padding in the signature", browsePath, "Ghost " + a.token(t) + "=", malformed},
		{"no kid", browsePath, "Ghost " + signJWT(`{"alg":"HS256","typ":"JWT"}`, good, raw),
			ghostAnswer{status: 400, typ: "BadRequestError", message: "Admin API kid missing.", code: "MISSING_ADMIN_API_KID"}},
		{"kid spelt KID", browsePath, "Ghost " + signJWT(`{"alg":"HS256","KID":"`+id+`"}`, good, raw),
			ghostAnswer{status: 400, typ: "BadRequestError", message: "Admin API kid missing.", code: "MISSING_ADMIN_API_KID"}},
		{"unknown kid", browsePath, "Ghost " + signJWT(hdr("HS256", "aaaaaaaaaaaaaaaaaaaaaaaa"), good, raw), unauthorized("Unknown Admin API Key", "UNKNOWN_ADMIN_API_KEY")},
		{"kid not a key id", browsePath, "Ghost " + signJWT(hdr("HS256", "../../etc"), good, raw), unauthorized("Unknown Admin API Key", "UNKNOWN_ADMIN_API_KEY")},
		{"revoked key", browsePath, "Ghost " + ghostToken(t, revoked, time.Now(), "/admin/"), unauthorized("Unknown Admin API Key", "UNKNOWN_ADMIN_API_KEY")},
		{"alg none, no signature", browsePath, "Ghost " + b64([]byte(hdr("none", id))) + "." + b64([]byte(good)) + ".", invalid("jwt signature is required")},
		{"alg none with a signature", browsePath, "Ghost " + signJWT(hdr("none", id), good, raw), invalid("invalid algorithm")},
		{"alg HS512", browsePath, "Ghost " + b64([]byte(hdr("HS512", id))) + "." + b64([]byte(good)) + "." + b64(bytes.Repeat([]byte{7}, 64)), invalid("invalid algorithm")},
		{"wrong secret", browsePath, "Ghost " + signJWT(hdr("HS256", id), good, otherSecret), invalid("invalid signature")},
		{"secret used as text, not hex-decoded", browsePath, "Ghost " + signJWT(hdr("HS256", id), good, []byte(secret)), invalid("invalid signature")},
		{"tampered claims", browsePath, "Ghost " + func() string {
			parts := strings.Split(claims(good), ".")
			parts[1] = b64([]byte(`{"iat":` + itoa(now) + `,"aud":"/admin/","x":1}`))
			return strings.Join(parts, ".")
		}(), invalid("invalid signature")},
		{"nbf in 2 minutes", browsePath, "Ghost " + claims(`{"iat":`+itoa(now)+`,"nbf":`+itoa(now+120)+`,"aud":"/admin/"}`), invalid("jwt not active")},
		{"nbf not a number", browsePath, "Ghost " + claims(`{"iat":`+itoa(now)+`,"nbf":"soon","aud":"/admin/"}`), invalid("invalid nbf value")},
		{"expired", browsePath, "Ghost " + claims(`{"iat":`+itoa(now-600)+`,"exp":`+itoa(now-300)+`,"aud":"/admin/"}`), invalid("jwt expired")},
		{"exp null", browsePath, "Ghost " + claims(`{"iat":`+itoa(now)+`,"exp":null,"aud":"/admin/"}`), invalid("invalid exp value")},
		{"aud /content/", browsePath, "Ghost " + ghostToken(t, a.key, time.Now(), "/content/"), audAdmin},
		{"aud /admin/x", browsePath, "Ghost " + ghostToken(t, a.key, time.Now(), "/admin/x"), audAdmin},
		{"aud empty", browsePath, "Ghost " + ghostToken(t, a.key, time.Now(), ""), audAdmin},
		{"no aud", browsePath, "Ghost " + claims(`{"iat":`+itoa(now)+`,"exp":`+itoa(now+300)+`}`), audAdmin},
		{"aud /admin/ on the v4 path", "/ghost/api/v4/admin/webhooks/", "Ghost " + a.token(t), invalid(`jwt audience invalid. expected: /\/?v4\/admin\/?$/`)},
		{"aud /v4/admin/ on the canary path", "/ghost/api/canary/admin/webhooks/", "Ghost " + ghostToken(t, a.key, time.Now(), "/v4/admin/"),
			invalid(`jwt audience invalid. expected: /\/?canary\/admin\/?$/`)},
		{"no iat", browsePath, "Ghost " + claims(`{"exp":`+itoa(now+300)+`,"aud":"/admin/"}`), invalid("iat required when maxAge is specified")},
		{"iat a string", browsePath, "Ghost " + claims(`{"iat":"`+itoa(now)+`","aud":"/admin/"}`), invalid("iat required when maxAge is specified")},
		{"issued 6 minutes ago, exp in 4", browsePath, "Ghost " + claims(`{"iat":`+itoa(now-360)+`,"exp":`+itoa(now+240)+`,"aud":"/admin/"}`), invalid("maxAge exceeded")},
	}
	for _, c := range cases {
		code, body := a.doAuth(t, "GET", c.path, c.auth, "")
		wantGhostAnswer(t, c.name, code, body, c.want)
	}
	// Every route of both APIs is behind the same check.
	for _, r := range [][2]string{
		{"POST", "/ghost/api/admin/webhooks/"}, {"PUT", "/ghost/api/admin/webhooks/0123456789abcdef01234567/"},
		{"DELETE", "/ghost/api/admin/webhooks/0123456789abcdef01234567/"}, {"GET", "/relay/v1/events"},
		{"GET", "/relay/v1/events/9b2c1f9e-0000-4000-8000-000000000000"}, {"GET", "/relay/v1/deliveries"},
		{"POST", "/relay/v1/deliveries/1/redeliver"},
	} {
		code, body := a.doAuth(t, r[0], r[1], "Ghost "+signJWT(hdr("HS256", id), good, otherSecret), "")
		wantGhostAnswer(t, r[0]+" "+r[1]+" with a bad token", code, body, invalid("invalid signature"))
	}
	// Refusals are logged with their reason, never with the token or the secret.
	if logs := a.logs.String(); strings.Contains(logs, secret) || strings.Contains(logs, a.token(t)[:40]) {
		t.Errorf("logs contain the key's secret or a token")
	}
}

// TestTokensThatWouldOutliveFiveMinutesAreRefusedThoughGhostTakesThem: the deliberate
// differences. Ghost ages a token from its iat alone and takes any iat, so these live
// for years there.
func TestTokensThatWouldOutliveFiveMinutesAreRefusedThoughGhostTakesThem(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	id, secret, _ := strings.Cut(a.key, ":")
	raw, _ := hex.DecodeString(secret)
	now := time.Now()
	claims := func(c string) string { return "Ghost " + signJWT(`{"alg":"HS256","typ":"JWT","kid":"`+id+`"}`, c, raw) }
	cases := []struct {
		name, auth string
		want       ghostAnswer
	}{
		{"iat and exp in milliseconds", claims(`{"iat":` + itoa(now.UnixMilli()) + `,"exp":` + itoa(now.UnixMilli()+300000) + `,"aud":"/admin/"}`),
			ghostAnswer{status: 401, typ: "UnauthorizedError", message: "Invalid token: iat is in the future", code: "INVALID_JWT"}},
		{"iat 10 minutes ahead", "Ghost " + ghostToken(t, a.key, now.Add(10*time.Minute), "/admin/"),
			ghostAnswer{status: 401, typ: "UnauthorizedError", message: "Invalid token: iat is in the future", code: "INVALID_JWT"}},
		{"iat 0 (jsonwebtoken reads it as now)", claims(`{"iat":0,"aud":"/admin/"}`),
			ghostAnswer{status: 401, typ: "UnauthorizedError", message: "Invalid token: maxAge exceeded", code: "INVALID_JWT"}},
		{"a token over 4096 bytes", claims(`{"iat":` + itoa(now.Unix()) + `,"aud":"/admin/","pad":"` + strings.Repeat("x", 4096) + `"}`),
			ghostAnswer{status: 400, typ: "BadRequestError", message: "Invalid token", code: "INVALID_JWT",
				context: "The token is longer than the 4096 bytes the relay accepts."}},
	}
	for _, c := range cases {
		code, body := a.doAuth(t, "GET", browsePath, c.auth, "")
		wantGhostAnswer(t, c.name, code, body, c.want)
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
	t.Parallel()
	a := newAdminAPI(t, nil)
	tok := a.token(t)
	if code, _ := a.do(t, "GET", browsePath, tok, ""); code != http.StatusOK {
		t.Fatalf("before revocation: %d", code)
	}
	if _, err := a.keys.Revoke(context.Background(), strings.SplitN(a.key, ":", 2)[0]); err != nil {
		t.Fatal(err)
	}
	code, body := a.do(t, "GET", browsePath, tok, "")
	wantGhostAnswer(t, "same token after revocation", code, body,
		ghostAnswer{status: 401, typ: "UnauthorizedError", message: "Unknown Admin API Key", code: "UNKNOWN_ADMIN_API_KEY"})
}

func TestEncryptedKeysAreUnusableWithoutTheirKEK(t *testing.T) {
	t.Parallel()
	kek, err := sealbox.ParseKEK(strings.Repeat("ab", 32))
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
	other, _ := sealbox.ParseKEK(strings.Repeat("cd", 32))
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
	if _, err := sealbox.ParseKEK(base64.StdEncoding.EncodeToString(kek)); err != nil {
		t.Errorf("base64 KEK refused: %v", err)
	}
	for _, bad := range []string{"hunter2", strings.Repeat("ab", 16), strings.Repeat("zz", 32)} {
		if _, err := sealbox.ParseKEK(bad); err == nil {
			t.Errorf("KEK %q accepted", bad)
		}
	}
}
