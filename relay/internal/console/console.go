// Package console is the operator console that `relay run` serves under /ui/: webhooks,
// deliveries, events, Stripe events and Ghost sites in a browser, server-rendered with
// html/template so that everything works without JavaScript (one small static script
// copies an event's exact bytes).
//
// Who may use it: the holder of a console key (`relay keys create --console`), whose
// integration is of type console. Such a key acts as the operator (every webhook, every
// delivery), which is why an integration's own key, scoped to its webhooks in the Admin
// API, cannot sign in. Sessions are rows of relay.console_sessions keyed by a hash of the
// cookie's token; every form that changes something carries a CSRF token derived from
// it; every change is written to relay.console_changes in the transaction that makes it.
package console

import (
	"context"
	"embed"
	"errors"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/apikey"
	"github.com/relayhq/relay/relay/internal/ghostsite"
)

// Prefix is where the console is served.
const Prefix = "/ui/"

// DefaultSessionTTL is how long a session lasts when RELAY_CONSOLE_SESSION_TTL is unset.
const DefaultSessionTTL = 12 * time.Hour

// Session lifetimes the relay accepts.
const (
	MinSessionTTL = 5 * time.Minute
	MaxSessionTTL = 7 * 24 * time.Hour
)

// Deps are what the console needs.
type Deps struct {
	Pool *pgxpool.Pool
	// Keys checks the key pasted at sign-in (it opens keys sealed under the KEK).
	Keys *apikey.Store
	// GhostSites lists the connected Ghost sites; nil reads them without a KEK (the
	// console never reads their secrets).
	GhostSites *ghostsite.Store
	Log        zerolog.Logger
	// SessionTTL is how long a session lasts from sign-in (DefaultSessionTTL when zero).
	SessionTTL time.Duration
}

//go:embed templates/*.html static/*
var assets embed.FS

// console is the handler: the routes, with what they share.
type console struct {
	Deps
	mux *http.ServeMux
}

// New returns the console's handler for the paths under Prefix.
func New(d Deps) http.Handler {
	if d.SessionTTL == 0 {
		d.SessionTTL = DefaultSessionTTL
	}
	if d.GhostSites == nil {
		d.GhostSites = &ghostsite.Store{Pool: d.Pool}
	}
	c := &console{Deps: d, mux: http.NewServeMux()}
	static, err := fs.Sub(assets, "static")
	if err != nil {
		panic(err) // the embedded tree has it: a build without it cannot happen
	}
	c.mux.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", staticFiles(static)))
	c.mux.HandleFunc("GET /ui/sign-in", c.signInPage)
	c.mux.HandleFunc("POST /ui/sign-in", c.signIn)

	c.page("GET /ui/{$}", c.overview)
	c.page("GET /ui/webhooks", c.webhooks)
	c.page("GET /ui/webhooks/new", c.newWebhook)
	c.action("POST /ui/webhooks", c.addWebhook)
	c.page("GET /ui/webhooks/{id}", c.webhookPage)
	c.page("GET /ui/webhooks/{id}/edit", c.editWebhookPage)
	c.action("POST /ui/webhooks/{id}", c.editWebhook)
	c.action("POST /ui/webhooks/{id}/disable", c.disableWebhook)
	c.action("POST /ui/webhooks/{id}/enable", c.enableWebhook)
	c.page("GET /ui/webhooks/{id}/rotate-secret", c.rotateSecretPage)
	c.action("POST /ui/webhooks/{id}/rotate-secret", c.rotateSecret)
	c.page("GET /ui/webhooks/{id}/delete", c.deleteWebhookPage)
	c.action("POST /ui/webhooks/{id}/delete", c.deleteWebhook)
	c.page("GET /ui/deliveries", c.deliveries)
	c.page("GET /ui/deliveries/{id}", c.deliveryPage)
	c.action("POST /ui/deliveries/{id}/redeliver", c.redeliver)
	c.page("GET /ui/deliveries/{id}/skip", c.skipPage)
	c.action("POST /ui/deliveries/{id}/skip", c.skip)
	c.page("GET /ui/events", c.events)
	c.page("GET /ui/events/{id}", c.eventPage)
	c.page("GET /ui/events/{id}/body", c.eventBody)
	c.page("GET /ui/stripe", c.stripeEvents)
	c.page("GET /ui/ghost", c.ghostSites)
	c.action("POST /ui/sign-out", c.signOut)
	c.mux.HandleFunc("/ui/", c.notFound)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		c.mux.ServeHTTP(w, r)
	})
}

// csp allows the console's own stylesheet and script and nothing else: no inline script
// or style (so markup injected through data could not run even if it were not escaped),
// no framing, forms posting only to the console.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
}

// staticFiles serves the embedded stylesheet and script. They change only with the
// binary, so a short cache is safe; pages themselves are never cached.
func staticFiles(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	})
}

// handler is a page or an action: it runs for a signed-in operator.
type handler func(w http.ResponseWriter, r *http.Request, s *session) error

// page registers a GET route for signed-in operators; without a session it sends the
// browser to the sign-in page, which brings it back here afterwards.
func (c *console) page(pattern string, h handler) {
	c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		s, err := c.currentSession(r)
		if err != nil {
			c.fail(w, r, nil, err)
			return
		}
		if s == nil {
			http.Redirect(w, r, "/ui/sign-in?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		noStore(w)
		if err := h(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	})
}

// action registers a POST route that changes something: it needs a session and the
// session's CSRF token in the form, and refuses a request another site started.
func (c *console) action(pattern string, h handler) {
	c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		noStore(w)
		s, err := c.currentSession(r)
		if err != nil {
			c.fail(w, r, nil, err)
			return
		}
		if s == nil {
			c.refuse(w, r, nil, http.StatusForbidden, "Your session has ended", "Sign in again, then repeat what you were doing. Nothing was changed.")
			return
		}
		if crossSite(r) || !s.checkCSRF(r.PostFormValue(csrfField)) {
			c.Log.Warn().Str("key_id", s.KeyID).Str("path", r.URL.Path).Msg("console form refused: CSRF check failed")
			c.refuse(w, r, s, http.StatusForbidden, "This form cannot be accepted",
				"It did not carry this session's security token (it came from another site, or from a page older than your session). Nothing was changed: go back, reload the page and try again.")
			return
		}
		if err := h(w, r, s); err != nil {
			c.fail(w, r, s, err)
		}
	})
}

// maxFormBytes bounds a form: a webhook is a few hundred bytes.
const maxFormBytes = 64 << 10

// crossSite reports a request a browser says another site started (Sec-Fetch-Site), a
// second line of defence behind the CSRF token and the SameSite cookie.
func crossSite(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
		return false
	}
	return true
}

func noStore(w http.ResponseWriter) {
	w.Header().Set("Cache-Control", "no-store")
}

// errNotFound makes a page answer 404.
var errNotFound = errors.New("not found")

func (c *console) notFound(w http.ResponseWriter, r *http.Request) {
	noStore(w)
	s, err := c.currentSession(r)
	if err != nil || s == nil {
		// Nothing about what exists without a session.
		http.Redirect(w, r, "/ui/sign-in", http.StatusSeeOther)
		return
	}
	c.refuse(w, r, s, http.StatusNotFound, "Not found", "There is no such page in the console.")
}

// fail answers a handler's error: 404 for what does not exist, otherwise a 500 whose
// cause is logged and never shown.
func (c *console) fail(w http.ResponseWriter, r *http.Request, s *session, err error) {
	if errors.Is(err, errNotFound) || errors.Is(err, pgx.ErrNoRows) {
		c.refuse(w, r, s, http.StatusNotFound, "Not found", "It does not exist, or no longer does.")
		return
	}
	if errors.Is(err, context.Canceled) {
		return // the browser went away
	}
	c.Log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("console request failed")
	c.refuse(w, r, s, http.StatusInternalServerError, "Something went wrong", "The relay could not answer this page; the reason is in its log.")
}

// refuse renders a message page with status.
func (c *console) refuse(w http.ResponseWriter, r *http.Request, s *session, status int, title, text string) {
	c.render(w, r, s, status, "message", title, "", messageData{Title: title, Text: text})
}

type messageData struct {
	Title, Text string
}
