package console_test

import (
	"fmt"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/relayhq/relay/relay/internal/webhook"
)

// Markup in what the console shows — a webhook's name and URL (the operator's or an
// integration's), an event's body and the ordering key taken from it (the CMS's), a
// receiver's response — is text: it is
// escaped in the HTML, and in a real browser no script of it runs and no element of it
// exists. (The CSP would stop an inline script anyway; the DOM checks do not rely on it.)
func TestMarkupInDataRendersInert(t *testing.T) {
	const (
		name = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">"onload="window.__pwned=3`
		key  = `<script>window.__pwned=11</script>"onload="window.__pwned=12`
		body = `{"post":{"current":{"id":"<script>window.__pwned=11</script>\"onload=\"window.__pwned=12","title":"<script>window.__pwned=4</script>\"onload=\"window.__pwned=5","html":"<img src=x onerror=window.__pwned=6>"},"previous":{}}}`
		resp = `<script>window.__pwned=7</script><svg onload="window.__pwned=8"></svg>"onload="window.__pwned=9`
	)
	e := newEnv(t)
	rs := newReceiverSwitch(t)
	rs.failing.Store(true)
	rs.body.Store(resp)
	startRelay(t, e)
	hook := addHook(t, e, webhook.Input{Event: ptr("post.published"), TargetURL: ptr(rs.rc.URL() + `/hook?q="onload="window.__pwned=10`),
		Name: webhook.Value(name), Ordered: ptr(true)})
	eventID := emit(t, e.db, "post.published", body)
	deliveryID := deliveryOf(t, e, eventID)
	rs.rc.WaitFor(t, 1, 10*time.Second)
	waitForStatus(t, e, deliveryID, "failed")

	// What each page must show, as text.
	pages := map[string][]string{
		"/ui/":                                {name},
		"/ui/webhooks":                        {name},
		"/ui/webhooks/" + hook.ID:             {name},
		"/ui/webhooks/" + hook.ID + "/delete": {name},
		"/ui/deliveries":                      {name},
		fmt.Sprintf("/ui/deliveries/%d", deliveryID):      {name, resp, key, `"<script>window.__pwned=4</script>\"onload=\"window.__pwned=5"`},
		fmt.Sprintf("/ui/deliveries/%d/skip", deliveryID): {name, key},
		"/ui/events/" + eventID:                           {name, `"<img src=x onerror=window.__pwned=6>"`},
		"/ui/webhooks/" + hook.ID + "/edit":               {},
		"/ui/events":                                      {},
	}
	c := e.client(t)
	e.signIn(t, c, e.key)
	for p, wants := range pages {
		_, page, _ := get(t, c, e.srv.URL+p)
		for _, raw := range []string{"<script>window", "<img src=x", "<svg onload", ` onload="window`, ` onerror="window`} {
			if strings.Contains(page, raw) {
				t.Errorf("%s: the HTML holds %q unescaped", p, raw)
			}
		}
		for _, w := range wants {
			if !strings.Contains(html.UnescapeString(page), w) {
				t.Errorf("%s does not show %q as text", p, w)
			}
		}
	}

	ctx := tab(t, 3*time.Minute)
	open(t, ctx, e.srv.URL+"/ui/sign-in")
	fill(t, ctx, "input[name=key]", e.key)
	click(t, ctx, "form.form button[type=submit]")
	for p, wants := range pages {
		open(t, ctx, e.srv.URL+p)
		inert, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.__pwned === undefined
			&& document.querySelectorAll("[onload], [onerror], img, svg script, iframe, object, embed").length === 0
			&& Array.from(document.scripts).every(s => new URL(s.src).pathname === "/ui/static/console.js")`))
		if err != nil || !inert {
			t.Errorf("%s: markup from the data came alive in the browser (%v)", p, err)
		}
		for _, w := range wants {
			shown, err := chromedp.Run(ctx, chromedp.Evaluate[bool](fmt.Sprintf(`document.body.textContent.includes(%q)`, w)))
			if err != nil || !shown {
				t.Errorf("%s: the browser does not show %q as text (%v)", p, w, err)
			}
		}
	}
	{
		p := "/ui/webhooks/" + hook.ID + "/edit"
		open(t, ctx, e.srv.URL+p)
		value, err := chromedp.Run(ctx, chromedp.Value(chromedp.CSS("#name")))
		if err != nil || value != name {
			t.Errorf("%s: the name field holds %q (%v), want the name as typed", p, value, err)
		}
	}
}

func waitForStatus(t testing.TB, e *env, deliveryID int64, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st string
		if err := e.db.Pool.QueryRow(t.Context(), `SELECT status FROM relay.deliveries WHERE id = $1`, deliveryID).Scan(&st); err != nil {
			t.Fatal(err)
		}
		if st == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("delivery %d is %s, want %s", deliveryID, st, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
