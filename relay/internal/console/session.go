package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/apikey"
)

// Cookies and form fields.
const (
	// sessionCookie holds the session token; the database has only its SHA-256.
	sessionCookie = "relay_console"
	// signInCookie is the sign-in form's double-submit CSRF token (there is no session
	// yet to derive one from): a site cannot sign a browser in with a key of its own.
	signInCookie = "relay_console_signin"
	csrfField    = "csrf"
	tokenBytes   = 32
)

// session is a signed-in operator: a console key's holder.
type session struct {
	KeyID     string
	KeyName   string
	CreatedAt time.Time
	ExpiresAt time.Time
	token     []byte
}

// CSRF is the token every changing form of this session carries: an HMAC of a fixed
// label under the session token, so it is tied to the session, needs no storage, and
// cannot be computed by anyone who does not hold the cookie.
func (s *session) CSRF() string {
	mac := hmac.New(sha256.New, s.token)
	mac.Write([]byte("relay console csrf v1"))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// checkCSRF compares a form's token with the session's in constant time.
func (s *session) checkCSRF(presented string) bool {
	return presented != "" && hmac.Equal([]byte(presented), []byte(s.CSRF()))
}

func newToken() ([]byte, error) {
	b := make([]byte, tokenBytes)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("generate a session token: %w", err)
	}
	return b, nil
}

func hashToken(token []byte) []byte {
	h := sha256.Sum256(token)
	return h[:]
}

// sessionSQL finds a live session: not expired, of a key that is still active and
// still a console key. It runs on every request, so a revocation ends the session at
// the next click.
const sessionSQL = `SELECT s.key_id, k.name, s.created_at, s.expires_at
  FROM relay.console_sessions s
  JOIN relay.api_keys k ON k.id = s.key_id
  JOIN relay.integrations i ON i.id = k.integration_id
 WHERE s.token_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL AND i.type = 'console'`

// currentSession returns the request's session, nil without a live one.
func (c *console) currentSession(r *http.Request) (*session, error) {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, nil
	}
	token, err := base64.RawURLEncoding.DecodeString(ck.Value)
	if err != nil || len(token) != tokenBytes {
		return nil, nil
	}
	s := &session{token: token}
	err = c.Pool.QueryRow(r.Context(), sessionSQL, hashToken(token)).Scan(&s.KeyID, &s.KeyName, &s.CreatedAt, &s.ExpiresAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read console session: %w", err)
	}
	return s, nil
}

// isHTTPS reports whether the browser reached the relay over TLS, directly or through a
// proxy that says so. Trusting the header is safe: it only decides whether the cookie
// is marked Secure, for the browser that sent it.
func isHTTPS(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",")
	return strings.EqualFold(strings.TrimSpace(proto), "https")
}

func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: Prefix, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: isHTTPS(r),
	})
}

type signInData struct {
	CSRF    string
	Next    string
	Message string
	Error   string
}

// signInPage is the only page without a session. It sets the sign-in form's CSRF
// cookie; an operator who is signed in already goes on to the console.
func (c *console) signInPage(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	next := safeNext(r.URL.Query().Get("next"))
	if s, err := c.currentSession(r); err == nil && s != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	c.renderSignIn(w, r, http.StatusOK, next, signInMessage(r.URL.Query()), "")
}

func signInMessage(q url.Values) string {
	if q.Has("signed_out") {
		return "You are signed out."
	}
	if q.Get("next") != "" {
		return "Sign in to continue."
	}
	return ""
}

func (c *console) renderSignIn(w http.ResponseWriter, r *http.Request, status int, next, message, problem string) {
	token, err := newToken()
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	v := base64.RawURLEncoding.EncodeToString(token)
	setCookie(w, r, signInCookie, v, 3600)
	c.render(w, r, nil, status, "sign-in", "Sign in", "", signInData{CSRF: v, Next: next, Message: message, Error: problem})
}

// signIn checks the pasted key and starts a session. Only a console key's holder gets
// one; the answer says why a key was refused, which tells nothing to someone who does
// not hold it already.
func (c *console) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	noStore(w)
	next := safeNext(r.PostFormValue("next"))
	ck, err := r.Cookie(signInCookie)
	if err != nil || crossSite(r) || r.PostFormValue(csrfField) == "" ||
		!hmac.Equal([]byte(ck.Value), []byte(r.PostFormValue(csrfField))) {
		c.renderSignIn(w, r, http.StatusForbidden, next, "",
			"This sign-in form had expired or came from elsewhere. It has been renewed: paste your key again.")
		return
	}
	k, err := c.Keys.SignIn(r.Context(), r.PostFormValue("key"))
	switch {
	case errors.Is(err, apikey.ErrUnknownKey):
		c.Log.Info().Msg("console sign-in refused: unknown key")
		c.renderSignIn(w, r, http.StatusUnauthorized, next, "",
			"This key is not valid. Paste the whole key (id:secret) as relay keys create --console printed it; a revoked key no longer signs in.")
		return
	case errors.Is(err, apikey.ErrNotConsoleKey):
		c.Log.Info().Msg("console sign-in refused: an integration's key")
		c.renderSignIn(w, r, http.StatusForbidden, next, "",
			"This is an integration's Admin API key: it works with the Admin API, for that integration's webhooks only. To sign in to the console, make a console key with relay keys create --console --name YOUR-NAME.")
		return
	case errors.Is(err, apikey.ErrNoKEK), errors.Is(err, apikey.ErrWrongKEK):
		c.Log.Error().Err(err).Msg("console sign-in: cannot open the key")
		c.renderSignIn(w, r, http.StatusUnauthorized, next, "",
			"The relay cannot open this key: it was stored under another RELAY_KEY_ENCRYPTION_KEY. The relay's log says more.")
		return
	case err != nil:
		c.fail(w, r, nil, err)
		return
	}
	token, err := newToken()
	if err != nil {
		c.fail(w, r, nil, err)
		return
	}
	s := &session{token: token, KeyID: k.ID, KeyName: k.Name}
	err = pgx.BeginFunc(r.Context(), c.Pool, func(tx pgx.Tx) error {
		// Expired sessions go when anyone signs in: the table stays the size of the
		// sessions in use.
		if _, err := tx.Exec(r.Context(), `DELETE FROM relay.console_sessions WHERE expires_at <= now()`); err != nil {
			return err
		}
		if err := tx.QueryRow(r.Context(), `INSERT INTO relay.console_sessions (token_hash, key_id, expires_at)
			VALUES ($1, $2, now() + $3::interval) RETURNING created_at, expires_at`,
			hashToken(token), k.ID, c.SessionTTL).Scan(&s.CreatedAt, &s.ExpiresAt); err != nil {
			return err
		}
		return recordChange(r.Context(), tx, s, "signed in", target{}, "session until "+s.ExpiresAt.UTC().Format(time.RFC3339))
	})
	if err != nil {
		c.fail(w, r, nil, fmt.Errorf("start console session: %w", err))
		return
	}
	if err := c.Keys.Touch(r.Context(), k.ID); err != nil {
		c.Log.Warn().Err(err).Str("key_id", k.ID).Msg("could not record console key use")
	}
	c.Log.Info().Str("key_id", k.ID).Str("key_name", k.Name).Time("expires_at", s.ExpiresAt).Msg("console sign-in")
	setCookie(w, r, signInCookie, "", -1)
	setCookie(w, r, sessionCookie, base64.RawURLEncoding.EncodeToString(token), int(c.SessionTTL/time.Second))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// signOut ends the session: its row goes, and the cookie with it.
func (c *console) signOut(w http.ResponseWriter, r *http.Request, s *session) error {
	err := pgx.BeginFunc(r.Context(), c.Pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(r.Context(), `DELETE FROM relay.console_sessions WHERE token_hash = $1`, hashToken(s.token)); err != nil {
			return err
		}
		return recordChange(r.Context(), tx, s, "signed out", target{}, "")
	})
	if err != nil {
		return fmt.Errorf("end console session: %w", err)
	}
	c.Log.Info().Str("key_id", s.KeyID).Msg("console sign-out")
	setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/ui/sign-in?signed_out=1", http.StatusSeeOther)
	return nil
}

// safeNext keeps a post-sign-in destination inside the console: a path under /ui/,
// never another host (no open redirect).
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.HasPrefix(next, "/ui/sign-") ||
		strings.Contains(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return Prefix
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return Prefix
	}
	return next
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
