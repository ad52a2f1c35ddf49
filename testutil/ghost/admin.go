package ghost

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// AcceptVersion is the Accept-Version header the client sends, as @tryghost/admin-api
// v1.14 does for Ghost 6.
const AcceptVersion = "v6.0"

// Owner credentials of every test site: fixed test values (Ghost refuses weak passwords).
const (
	OwnerEmail    = "owner@example.com"
	OwnerPassword = "Xq7trLm92vKpZw4hJd"
)

// requestTimeout bounds one Admin API call.
const requestTimeout = 60 * time.Second

// Token is an Admin API token for key ("id:secret", as Ghost shows it) the way Ghost's
// own client makes one: HS256 JWT, header kid = the key id, key = the hex-decoded
// secret, claims iat, exp = iat+5m, aud. A malformed key panics: keys come from Ghost,
// so one that does not split or decode is a bug in the test.
func Token(key, audience string, iat time.Time) string {
	id, secret := splitKey(key)
	return SignJWT(
		map[string]any{"alg": "HS256", "typ": "JWT", "kid": id},
		map[string]any{"iat": iat.Unix(), "exp": iat.Add(5 * time.Minute).Unix(), "aud": audience},
		secret)
}

func splitKey(key string) (id string, secret []byte) {
	id, hexSecret, ok := strings.Cut(key, ":")
	if !ok {
		panic("ghost: Admin API key is not id:secret")
	}
	secret, err := hex.DecodeString(hexSecret)
	if err != nil {
		panic("ghost: Admin API key secret is not hex: " + err.Error())
	}
	return id, secret
}

// KeySecret is the hex-decoded secret of key, for tests that sign tokens of their own.
func KeySecret(key string) []byte { _, s := splitKey(key); return s }

// KeyID is the id part of key.
func KeyID(key string) string { id, _ := splitKey(key); return id }

// SignJWT signs any header and claims with HMAC-SHA512 when header["alg"] is "HS512" and
// HMAC-SHA256 otherwise, whatever alg says. It exists to make the unusual tokens that
// tests of token handling send (no kid, no exp, another alg, nbf, ...).
func SignJWT(header, claims map[string]any, secret []byte) string {
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			panic("ghost: marshal JWT part: " + err.Error())
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	signing := enc(header) + "." + enc(claims)
	h := sha256.New
	if header["alg"] == "HS512" {
		h = sha512.New
	}
	mac := hmac.New(h, secret)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Response is one HTTP answer as a test needs it.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// AdminDo calls the Admin API with a fresh token for key (aud /admin/). path is relative
// to /ghost/api/admin (e.g. "/webhooks/"). body is sent as is when it is []byte,
// json.RawMessage or string, otherwise as JSON; nil sends none.
func (s *Site) AdminDo(ctx context.Context, key, method, path string, body any) (status int, respBody []byte, err error) {
	r, err := s.AdminRaw(ctx, "Ghost "+Token(key, "/admin/", time.Now()), method, path, body)
	if err != nil {
		return 0, nil, err
	}
	return r.Status, r.Body, nil
}

// AdminRaw is one Admin API request with the given Authorization header value ("" sends
// none) and no cookies, for tests of token handling.
func (s *Site) AdminRaw(ctx context.Context, authorization, method, path string, body any) (Response, error) {
	h := http.Header{}
	if authorization != "" {
		h.Set("Authorization", authorization)
	}
	return s.do(ctx, http.DefaultClient, h, method, path, body)
}

// SessionDo calls the Admin API as the owner, with the session cookie Setup got (for
// what an integration may not do: settings, integrations).
func (s *Site) SessionDo(ctx context.Context, method, path string, body any) (status int, respBody []byte, err error) {
	r, err := s.do(ctx, s.client, http.Header{"Origin": {s.URL}}, method, path, body)
	if err != nil {
		return 0, nil, err
	}
	return r.Status, r.Body, nil
}

func (s *Site) do(ctx context.Context, c *http.Client, h http.Header, method, path string, body any) (Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case json.RawMessage:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return Response{}, fmt.Errorf("ghost: marshal %s %s body: %w", method, path, err)
		}
		rd = bytes.NewReader(j)
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.URL+"/ghost/api/admin"+path, rd)
	if err != nil {
		return Response{}, fmt.Errorf("ghost: %s %s: %w", method, path, err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Accept-Version", AcceptVersion)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return Response{}, fmt.Errorf("ghost: %s %s: %w", method, path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("ghost: %s %s: read answer: %w", method, path, err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: b}, nil
}

// Setup makes a fresh site usable: it creates the owner, logs the owner in (a session
// cookie kept by the site for SessionDo) and creates a custom integration "relay", whose
// Admin API key ("id:secret") it returns. On a site already set up it returns that key.
func (s *Site) Setup(t testing.TB) (adminKey string) {
	t.Helper()
	key, err := s.setup(context.Background())
	if err != nil {
		t.Fatalf("%v", err)
	}
	return key
}

func (s *Site) setup(ctx context.Context) (string, error) {
	s.mu.Lock()
	key := s.key
	s.mu.Unlock()
	if key != "" {
		return key, nil
	}
	_, err := s.session(ctx, http.MethodPost, "/authentication/setup/", map[string]any{"setup": []map[string]string{{
		"name": "Owner", "email": OwnerEmail, "password": OwnerPassword, "blogTitle": "relay test site",
	}}}, http.StatusCreated)
	if err != nil {
		return "", err
	}
	if err := s.login(ctx); err != nil {
		return "", err
	}
	if key, err = s.newIntegration(ctx, "relay"); err != nil {
		return "", err
	}
	s.mu.Lock()
	s.key = key
	s.mu.Unlock()
	return key, nil
}

// AdminKey is the key Setup made ("" before Setup).
func (s *Site) AdminKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.key
}

// Login starts an owner session (POST /session/ with an Origin header, as Ghost Admin
// does; Ghost refuses session requests without one).
func (s *Site) Login(t testing.TB) {
	t.Helper()
	if err := s.login(context.Background()); err != nil {
		t.Fatalf("%v", err)
	}
}

func (s *Site) login(ctx context.Context) error {
	_, err := s.session(ctx, http.MethodPost, "/session/",
		map[string]string{"username": OwnerEmail, "password": OwnerPassword}, http.StatusCreated)
	return err
}

// NewIntegration creates a custom integration as the owner and returns its Admin API key.
func (s *Site) NewIntegration(t testing.TB, name string) (adminKey string) {
	t.Helper()
	key, err := s.newIntegration(context.Background(), name)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return key
}

func (s *Site) newIntegration(ctx context.Context, name string) (string, error) {
	b, err := s.session(ctx, http.MethodPost, "/integrations/?include=api_keys",
		map[string]any{"integrations": []map[string]string{{"name": name}}}, http.StatusCreated)
	if err != nil {
		return "", err
	}
	var out struct {
		Integrations []struct {
			APIKeys []struct {
				ID     string `json:"id"`
				Type   string `json:"type"`
				Secret string `json:"secret"`
			} `json:"api_keys"`
		} `json:"integrations"`
	}
	if err := json.Unmarshal(b, &out); err != nil || len(out.Integrations) != 1 {
		return "", fmt.Errorf("ghost: create integration: unexpected answer %.300s (%v)", b, err)
	}
	for _, k := range out.Integrations[0].APIKeys {
		if k.Type == "admin" {
			if !strings.Contains(k.Secret, ":") { // older Ghosts sent the bare secret
				return k.ID + ":" + k.Secret, nil
			}
			return k.Secret, nil
		}
	}
	return "", fmt.Errorf("ghost: integration %s has no admin key: %.300s", name, b)
}

// SetStripeKeys sets test Stripe keys in Ghost's settings (any sk_test_/pk_test_ value
// passes Ghost's checks) or clears them. With keys set and WEBHOOK_SECRET in the
// environment (Restart), Ghost's Stripe endpoint verifies and handles events; without
// keys it answers 401 to everything. Production Ghost will not boot with keys on http.
func (s *Site) SetStripeKeys(t testing.TB, on bool) {
	t.Helper()
	var secret, publishable any
	if on {
		secret, publishable = "sk_test_"+strings.Repeat("a", 24), "pk_test_"+strings.Repeat("b", 24)
	}
	_, err := s.session(context.Background(), http.MethodPut, "/settings/", map[string]any{"settings": []map[string]any{
		{"key": "stripe_secret_key", "value": secret},
		{"key": "stripe_publishable_key", "value": publishable},
	}}, http.StatusOK)
	if err != nil {
		t.Fatalf("%v", err)
	}
}

// session is SessionDo that wants status want.
func (s *Site) session(ctx context.Context, method, path string, body any, want int) ([]byte, error) {
	status, b, err := s.SessionDo(ctx, method, path, body)
	if err != nil {
		return nil, err
	}
	if status != want {
		return nil, fmt.Errorf("ghost: %s %s as owner: HTTP %d, want %d: %.500s", method, path, status, want, b)
	}
	return b, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
