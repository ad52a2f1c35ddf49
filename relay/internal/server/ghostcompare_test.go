package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/testutil/ghost"
)

// TestGhostsClientGetsTheSameAnswersFromTheRelayAsFromARealGhost runs the same calls
// through @tryghost/admin-api, configured as v5.0, v6.0 and canary, against a real
// Ghost 6.65 and against the relay: adds, edits and deletes succeed on both, and every
// error the client raises (duplicate, unknown id on edit and delete, invalid event,
// invalid URL, another integration's webhook, a bad token) has the same name (type),
// message and context.
func TestGhostsClientGetsTheSameAnswersFromTheRelayAsFromARealGhost(t *testing.T) {
	t.Parallel()
	site := ghost.Shared(t)
	ctx := context.Background()
	ghostKey := site.AdminKey()
	ghostOther := site.NewIntegration(t, "relay comparison, other integration")
	a := newAdminAPI(t, nil)
	relayOther := newKey(t, a)

	// Ghost's shared site must be left as found: every webhook added there goes again.
	var ghostWebhooks []string
	t.Cleanup(func() {
		for _, id := range ghostWebhooks {
			for _, key := range []string{ghostKey, ghostOther} {
				if code, body, err := site.AdminDo(ctx, key, "DELETE", "/webhooks/"+id+"/", nil); err != nil || (code != http.StatusNoContent && code != http.StatusNotFound && code != http.StatusForbidden) {
					t.Errorf("cleanup: delete Ghost webhook %s: %d %s %v", id, code, body, err)
				}
			}
		}
	})
	addOn := func(add func(body string) (int, []byte), target string) string {
		t.Helper()
		code, body := add(`{"webhooks":[{"event":"post.published","target_url":"` + target + `"}]}`)
		if code != http.StatusCreated {
			t.Fatalf("add %s: %d %s", target, code, body)
		}
		var wb webhooksBody
		if err := json.Unmarshal(body, &wb); err != nil || len(wb.Webhooks) != 1 {
			t.Fatalf("add %s: %s", target, body)
		}
		return wb.Webhooks[0]["id"].(string)
	}

	for _, version := range []string{"v5.0", "v6.0", "canary"} {
		t.Run(version, func(t *testing.T) {
			// Nothing is sent to these: no post is published while they exist.
			target := "http://127.0.0.1:9/relay-compare/" + version
			ghostOtherID := addOn(func(body string) (int, []byte) {
				code, resp, err := site.AdminDo(ctx, ghostOther, "POST", "/webhooks/", body)
				if err != nil {
					t.Fatal(err)
				}
				return code, resp
			}, target+"/other")
			ghostWebhooks = append(ghostWebhooks, ghostOtherID)
			relayOtherID := addOn(func(body string) (int, []byte) {
				return a.do(t, "POST", browsePath, ghostToken(t, relayOther, time.Now(), "/admin/"), body)
			}, target+"/other")

			fromGhost := runGhostClient(t, "compare.js", site.URL, ghostKey, version, target, ghostOtherID)
			for _, s := range fromGhost {
				if id, ok := s["id"].(string); ok && id != "" {
					ghostWebhooks = append(ghostWebhooks, id)
				}
			}
			fromRelay := runGhostClient(t, "compare.js", a.srv.URL, a.key, version, target, relayOtherID)

			steps := []string{"add", "edit", "duplicate", "edit-unknown-id", "delete-unknown-id", "invalid-event", "invalid-url",
				"edit-other-integrations", "delete-other-integrations", "bad-token", "delete", "delete-again"}
			wantOK := map[string]bool{"add": true, "edit": true, "delete": true}
			for _, step := range steps {
				g, r := fromGhost[step], fromRelay[step]
				if g == nil || r == nil {
					t.Errorf("%s: step missing (Ghost %v, relay %v)", step, g, r)
					continue
				}
				if g["ok"] != wantOK[step] || (!wantOK[step] && (g["message"] == nil || g["name"] == nil)) {
					t.Errorf("%s: Ghost answered %v; the comparison expects ok=%v", step, g, wantOK[step])
				}
				for _, k := range []string{"ok", "name", "type", "message", "context", "webhook"} {
					if gv, rv := fmt.Sprint(g[k]), fmt.Sprint(r[k]); gv != rv {
						t.Errorf("%s: %s differs:\n Ghost %s\n relay %s", step, k, gv, rv)
					}
				}
			}
		})
	}
}

// TestRelayAnswersAsGhostAnsweredEveryCapturedRequest replays every request of the
// harness's fixtures (Ghost 6.65's own answers to failing Admin API requests and to
// token variants, checked against the real Ghost by the harness) against the relay and
// compares the answers byte for byte, error ids aside. The deliberate differences are
// listed here with the relay's answer, and in the README.
func TestRelayAnswersAsGhostAnsweredEveryCapturedRequest(t *testing.T) {
	t.Parallel()
	fixtures, err := ghost.LoadAdminFixtures()
	if err != nil {
		t.Fatal(err)
	}
	a := newAdminAPI(t, nil)
	const target = "http://127.0.0.1:9"
	own := a.addWebhook(t, a.token(t), "post.published", target+"/fixture")
	other := a.addWebhook(t, ghostToken(t, newKey(t, a), time.Now(), "/admin/"), "post.published", target+"/other")
	futureIat := `{"errors":[{"message":"Invalid token: iat is in the future","context":null,"type":"UnauthorizedError","details":null,"property":null,"help":null,"code":"INVALID_JWT","id":"<uuid>","ghostErrorCode":null}]}`
	deliberate := map[string]struct {
		status int
		answer string // "" when it is the relay's own success (GET)
		why    string
	}{
		"webhook.browse":          {http.StatusOK, "", "the relay serves GET for webhooks; Ghost has no such route"},
		"webhook.read":            {http.StatusOK, "", "the relay serves GET for webhooks; Ghost has no such route"},
		"token.iat_10m_future":    {http.StatusUnauthorized, futureIat, "an iat far ahead would make the token outlive five minutes"},
		"token.millisecond_times": {http.StatusUnauthorized, futureIat, "an iat in milliseconds never ages in Ghost"},
		"token.content_key": {http.StatusUnauthorized, `{"errors":[{"message":"Unknown Admin API Key","context":null,"type":"UnauthorizedError","details":null,"property":null,"help":null,"code":"UNKNOWN_ADMIN_API_KEY","id":"<uuid>","ghostErrorCode":null}]}`,
			"the relay has no Content API keys"},
	}
	// V8's JSON.parse messages are Ghost's context for a body that does not parse; the
	// relay's parser words it otherwise.
	parserWords := map[string]bool{"webhook.add.not_json": true, "webhook.edit.not_json": true}

	for _, c := range fixtures.Cases {
		path := "/ghost/api/admin" + ghost.Expand(c.Path, target, own, other)
		auth, err := ghost.CaseAuthorization(c.Auth, a.key, "cccccccccccccccccccccccc", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var body *strings.Reader
		if c.Body != nil {
			body = strings.NewReader(ghost.Expand(*c.Body, target, own, other))
		} else {
			body = strings.NewReader("")
		}
		req, _ := http.NewRequest(c.Method, a.srv.URL+path, body)
		req.Header.Set("Accept-Version", "v6.0")
		if c.Body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		got := ghost.CompactAnswer(buf.Bytes())

		if d, ok := deliberate[c.Name]; ok {
			if resp.StatusCode != d.status || (d.answer != "" && string(got) != d.answer) {
				t.Errorf("%s (deliberately not Ghost's: %s): %d %s, want %d %s", c.Name, d.why, resp.StatusCode, got, d.status, d.answer)
			}
			continue
		}
		want := ghost.CompactAnswer(c.Answer) // the fixture file is indented
		if parserWords[c.Name] {
			got, want = withoutContext(t, got), withoutContext(t, want)
		}
		if resp.StatusCode != c.Status || !bytes.Equal(got, want) {
			t.Errorf("%s: %s %s\n relay %d %s\n Ghost %d %s", c.Name, c.Method, path, resp.StatusCode, got, c.Status, want)
		}
	}
}

// withoutContext is an error answer with its context blanked.
func withoutContext(t *testing.T, answer []byte) []byte {
	t.Helper()
	var e struct {
		Errors []map[string]any `json:"errors"`
	}
	if err := json.Unmarshal(answer, &e); err != nil || len(e.Errors) != 1 {
		t.Fatalf("not an error answer: %s", answer)
	}
	if c, ok := e.Errors[0]["context"].(string); !ok || c == "" {
		t.Errorf("answer without a parser message in context: %s", answer)
	}
	e.Errors[0]["context"] = "<parser message>"
	b, _ := json.Marshal(e)
	return b
}
