package console_test

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/relay/internal/apikey"
	"github.com/relayhq/relay/relay/internal/relaytest"
	"github.com/relayhq/relay/relay/internal/server"
	"github.com/relayhq/relay/testutil"
)

// env is a relay's HTTP surface (the whole of it, as `relay run` serves it) on a test
// database, with a console key to sign in with.
type env struct {
	db    *testutil.DB
	srv   *httptest.Server
	keys  *apikey.Store
	key   string // id:secret, as relay keys create --console prints it
	keyID string
}

const stripeSecret = "whsec_Y29uc29sZSB0ZXN0IHN0cmlwZSBzZWNyZXQ="

func newEnv(t testing.TB) *env {
	t.Helper()
	db := testutil.NewDB(t)
	keys, err := apikey.NewStore(db.Pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	k, full, err := keys.CreateConsole(context.Background(), "Ada Lovelace")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.New(server.Deps{Pool: db.Pool, Log: relaytest.Logger(t), Keys: keys, StripeSecret: stripeSecret}))
	t.Cleanup(srv.Close)
	return &env{db: db, srv: srv, keys: keys, key: full, keyID: k.ID}
}

// client is a browser-like HTTP client: it keeps cookies and does not follow
// redirects, so a test sees each answer.
func (e *env) client(t testing.TB) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

var csrfPattern = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get fetches path and returns the status, the body and the response.
func get(t testing.TB, c *http.Client, u string) (int, string, *http.Response) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp
}

func post(t testing.TB, c *http.Client, u string, form url.Values) (int, string, *http.Response) {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp
}

func csrfOf(t testing.TB, html string) string {
	t.Helper()
	m := csrfPattern.FindStringSubmatch(html)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", clip(html))
	}
	return m[1]
}

// signIn signs c in with key and returns the session's CSRF token.
func (e *env) signIn(t testing.TB, c *http.Client, key string) string {
	t.Helper()
	code, body, resp := e.trySignIn(t, c, key)
	if code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d\n%s", code, clip(body))
	}
	if loc := resp.Header.Get("Location"); loc != "/ui/" {
		t.Fatalf("sign-in sent the browser to %q", loc)
	}
	_, page, _ := get(t, c, e.srv.URL+"/ui/")
	return csrfOf(t, page)
}

func (e *env) trySignIn(t testing.TB, c *http.Client, key string) (int, string, *http.Response) {
	t.Helper()
	_, page, _ := get(t, c, e.srv.URL+"/ui/sign-in")
	return post(t, c, e.srv.URL+"/ui/sign-in", url.Values{"csrf": {csrfOf(t, page)}, "key": {key}, "next": {"/ui/"}})
}

func clip(s string) string {
	if len(s) > 3000 {
		return s[:3000] + "…"
	}
	return s
}

// emit writes one event the way a CMS does, in its own transaction.
func emit(t testing.TB, db *testutil.DB, event, data string) string {
	t.Helper()
	var id string
	err := pgx.BeginFunc(context.Background(), db.Pool, func(tx pgx.Tx) error {
		var err error
		id, err = outbox.Emit(context.Background(), tx, event, []byte(data))
		return err
	})
	if err != nil {
		t.Fatalf("emit %s: %v", event, err)
	}
	return id
}

func mustContain(t testing.TB, what, html string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(html, w) {
			t.Errorf("%s does not show %q:\n%s", what, w, clip(html))
		}
	}
}
