package console

import (
	"bytes"
	"fmt"
	"html/template"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// view is what every page's template gets: the layout's fields, and the page's own
// data in Data.
type view struct {
	Title   string
	Nav     string
	Session *session
	Data    any
}

// CSRF is the token the page's forms carry ("" before sign-in).
func (v view) CSRF() string {
	if v.Session == nil {
		return ""
	}
	return v.Session.CSRF()
}

// pages are the templates, each the layout plus one page, parsed once from the
// embedded files. html/template escapes every value for where it appears; no data ever
// goes through template.HTML.
var pages = parsePages()

func parsePages() map[string]*template.Template {
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		panic(err)
	}
	out := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" {
			continue
		}
		t := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(assets, "templates/layout.html", n))
		out[base] = t
	}
	return out
}

// render writes a whole page, or a 500 if its template fails (never half a page).
func (c *console) render(w http.ResponseWriter, _ *http.Request, s *session, status int, page, title, nav string, data any) {
	t, ok := pages[page]
	if !ok {
		c.Log.Error().Str("page", page).Msg("console: no such template")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, view{Title: title, Nav: nav, Session: s, Data: data}); err != nil {
		c.Log.Error().Err(err).Str("page", page).Msg("console: rendering a page failed")
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

var funcs = template.FuncMap{
	"ago":      ago,
	"agoPtr":   func(t *time.Time) string { return ago(deref(t)) },
	"utc":      utc,
	"utcPtr":   func(t *time.Time) string { return utc(deref(t)) },
	"iso":      func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"str":      func(s *string) string { return deref(s) },
	"num":      func(n *int) string { return intOr(n, "—") },
	"status":   statusClass,
	"pct":      pct,
	"ms":       millis,
	"short":    short,
	"count":    count,
	"plural":   plural,
	"add":      func(a, b int) int { return a + b },
	"query":    query,
	"eventURL": func(id string) string { return "/ui/events/" + url.PathEscape(id) },
	"hookURL":  func(id string) string { return "/ui/webhooks/" + url.PathEscape(id) },
	"dlvURL":   func(id int64) string { return "/ui/deliveries/" + strconv.FormatInt(id, 10) },
	"tv":       func(t *time.Time) time.Time { return deref(t) },
	"int64":    func(n int) int64 { return int64(n) },
	"pair":     func(a, b chartPair) []chartPair { return []chartPair{a, b} },
	"codeText": codeText,
	"clip":     clip,
	"codeClass": func(v any) string {
		if n, err := strconv.Atoi(codeText(v)); err == nil && n >= 200 && n < 300 {
			return "ok"
		}
		return "bad"
	},
}

// codeText is an HTTP status code as text, whatever holds it ("" for none).
func codeText(v any) string {
	switch x := v.(type) {
	case int:
		if x != 0 {
			return strconv.Itoa(x)
		}
	case *int:
		if x != nil {
			return strconv.Itoa(*x)
		}
	case string:
		return x
	case *string:
		return deref(x)
	}
	return ""
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func intOr(n *int, none string) string {
	if n == nil {
		return none
	}
	return strconv.Itoa(*n)
}

// ago is how long ago t was, in words ("—" for none); pages show the exact time beside
// it on hover.
func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := time.Since(t)
	future := d < 0
	if future {
		d = -d
	}
	var s string
	switch {
	case d < 5*time.Second:
		if future {
			return "now"
		}
		return "just now"
	case d < time.Minute:
		s = fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		s = fmt.Sprintf("%d min", int(d.Minutes()))
	case d < 48*time.Hour:
		s = fmt.Sprintf("%d h", int(d.Hours()))
	default:
		s = fmt.Sprintf("%d days", int(d.Hours()/24))
	}
	if future {
		return "in " + s
	}
	return s + " ago"
}

func utc(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05 UTC")
}

// statusClass is the colour of a status: delivery, webhook or HTTP.
func statusClass(s string) string {
	switch s {
	case "succeeded", "active", "ok":
		return "ok"
	case "failed", "disabled", "bad":
		return "bad"
	case "pending", "wait":
		return "wait"
	}
	return "muted" // skipped, cancelled, and anything else
}

// clip shortens s to n characters for a table (its whole text goes in a title).
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// pct writes a success rate; a negative rate means there was nothing to rate.
func pct(r float64) string {
	if r < 0 {
		return "—"
	}
	if r >= 0.9995 || r == 0 {
		return strconv.FormatFloat(math.Round(r*100), 'f', 0, 64) + "%"
	}
	return strconv.FormatFloat(math.Floor(r*1000)/10, 'f', 1, 64) + "%"
}

func millis(ms int) string {
	if ms < 1000 {
		return strconv.Itoa(ms) + " ms"
	}
	return strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64) + " s"
}

// short is the start of a long id, for tables (the full id is in the link and title).
func short(id string) string {
	if len(id) <= 12 {
		return id
	}
	return id[:8] + "…"
}

func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 10000 && n > -10000 {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 && r != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// query builds a link's query string from name/value pairs, leaving out empty values.
func query(path string, kv ...string) string {
	q := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			q.Set(kv[i], kv[i+1])
		}
	}
	if len(q) == 0 {
		return path
	}
	return path + "?" + q.Encode()
}
