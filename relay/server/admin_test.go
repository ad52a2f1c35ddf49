package server_test

import (
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

type webhooksBody struct {
	Webhooks []map[string]any `json:"webhooks"`
	Meta     *struct {
		Pagination struct {
			Total int `json:"total"`
		} `json:"pagination"`
	} `json:"meta"`
}

func decodeWebhooks(t testing.TB, what string, body []byte) webhooksBody {
	t.Helper()
	var wb webhooksBody
	if err := json.Unmarshal(body, &wb); err != nil {
		t.Fatalf("%s: body %s: %v", what, body, err)
	}
	return wb
}

var ghostTimeRE = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func TestAdminAPIAddEditDeleteAsGhost(t *testing.T) {
	a := newAdminAPI(t, nil)
	keyID := strings.SplitN(a.key, ":", 2)[0]

	// POST, as api.webhooks.add({event, target_url, name, secret}) sends it.
	code, body := a.do(t, "POST", "/ghost/api/admin/webhooks/", a.token(t),
		`{"webhooks":[{"event":"post.published","target_url":"https://example.com/hook","name":"Deploy","secret":"s3cret"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("POST: status %d, want 201 (%s)", code, body)
	}
	wb := decodeWebhooks(t, "POST", body)
	if len(wb.Webhooks) != 1 {
		t.Fatalf("POST: %d webhooks in response", len(wb.Webhooks))
	}
	w := wb.Webhooks[0]
	id, _ := w["id"].(string)
	if !regexp.MustCompile(`^[0-9a-f]{24}$`).MatchString(id) {
		t.Errorf("id %q is not a 24-hex ObjectId", id)
	}
	for k, want := range map[string]any{
		"event": "post.published", "target_url": "https://example.com/hook", "name": "Deploy",
		"secret": "s3cret", "api_version": "v5", "integration_id": keyID, "status": "active",
		"last_triggered_at": nil, "last_triggered_status": nil, "last_triggered_error": nil,
	} {
		if w[k] != want {
			t.Errorf("POST response %s = %v, want %v", k, w[k], want)
		}
	}
	for _, k := range []string{"created_at", "updated_at"} {
		if s, _ := w[k].(string); !ghostTimeRE.MatchString(s) {
			t.Errorf("%s = %v, want Ghost's UTC millisecond format", k, w[k])
		}
	}

	// Without the trailing slash, and under a legacy version prefix.
	code, body = a.do(t, "POST", "/ghost/api/admin/webhooks", a.token(t),
		`{"webhooks":[{"event":"post.*","target_url":"https://example.com/all","integration_id":"abcdefabcdefabcdefabcdef"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("POST without slash: %d %s", code, body)
	}
	if got := decodeWebhooks(t, "POST", body).Webhooks[0]["integration_id"]; got != "abcdefabcdefabcdefabcdef" {
		t.Errorf("explicit integration_id became %v", got)
	}
	code, body = a.do(t, "POST", "/ghost/api/v3/admin/webhooks/", ghostToken(t, a.key, time.Now(), "/v3/admin/"),
		`{"webhooks":[{"event":"member.added","target_url":"https://example.com/members"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("POST on /v3/: %d %s", code, body)
	}
	third := decodeWebhooks(t, "POST", body).Webhooks[0]["id"].(string)
	if code, body := a.do(t, "GET", "/ghost/api/nonsense/admin/webhooks/", a.token(t), ""); code != http.StatusNotFound {
		t.Errorf("GET under a version no Ghost had: %d %s", code, body)
	}

	// GET the collection, with and without slash; GET one.
	for _, p := range []string{"/ghost/api/admin/webhooks/", "/ghost/api/admin/webhooks"} {
		code, body = a.do(t, "GET", p, a.token(t), "")
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", p, code, body)
		}
		if wb := decodeWebhooks(t, "GET", body); len(wb.Webhooks) != 3 || wb.Meta == nil || wb.Meta.Pagination.Total != 3 {
			t.Errorf("GET %s: %s", p, body)
		}
	}
	code, body = a.do(t, "GET", "/ghost/api/admin/webhooks/"+id+"/", a.token(t), "")
	if code != http.StatusOK || decodeWebhooks(t, "GET one", body).Webhooks[0]["id"] != id {
		t.Errorf("GET one: %d %s", code, body)
	}

	// PUT, as api.webhooks.edit({id, ...}) sends it: id in the path, not the body.
	code, body = a.do(t, "PUT", "/ghost/api/admin/webhooks/"+id+"/", a.token(t),
		`{"webhooks":[{"target_url":"https://example.com/hook2","name":"Renamed"}]}`)
	if code != http.StatusOK {
		t.Fatalf("PUT: %d %s", code, body)
	}
	w = decodeWebhooks(t, "PUT", body).Webhooks[0]
	if w["target_url"] != "https://example.com/hook2" || w["name"] != "Renamed" || w["event"] != "post.published" || w["secret"] != "s3cret" {
		t.Errorf("PUT response %v", w)
	}
	code, body = a.do(t, "PUT", "/ghost/api/admin/webhooks/"+id, a.token(t), `{"webhooks":[{"status":"disabled"}]}`)
	if code != http.StatusOK || decodeWebhooks(t, "PUT", body).Webhooks[0]["status"] != "disabled" {
		t.Errorf("PUT status disabled without slash: %d %s", code, body)
	}

	// DELETE: 204 with no body, then 404.
	code, body = a.do(t, "DELETE", "/ghost/api/admin/webhooks/"+id+"/", a.token(t), "")
	if code != http.StatusNoContent || len(body) != 0 {
		t.Errorf("DELETE: %d %q, want 204 and no body", code, body)
	}
	code, body = a.do(t, "DELETE", "/ghost/api/admin/webhooks/"+id+"/", a.token(t), "")
	wantError(t, "DELETE again", code, body, http.StatusNotFound, "NotFoundError")
	code, body = a.do(t, "DELETE", "/ghost/api/v3/admin/webhooks/"+third, ghostToken(t, a.key, time.Now(), "/v3/admin/"), "")
	if code != http.StatusNoContent {
		t.Errorf("DELETE on /v3/ without slash: %d %s", code, body)
	}
}

func TestAdminAPIRefusesInvalidInputInGhostsShape(t *testing.T) {
	a := newAdminAPI(t, nil)
	code, body := a.do(t, "POST", browsePath, a.token(t), `{"webhooks":[{"event":"post.added","target_url":"https://example.com/a"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("setup POST: %d %s", code, body)
	}
	existing := decodeWebhooks(t, "POST", body).Webhooks[0]["id"].(string)
	code, body = a.do(t, "POST", browsePath, a.token(t), `{"webhooks":[{"event":"tag.added","target_url":"https://example.com/b"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("setup POST: %d %s", code, body)
	}
	other := decodeWebhooks(t, "POST", body).Webhooks[0]["id"].(string)

	one := func(fields string) string { return `{"webhooks":[{` + fields + `}]}` }
	cases := []struct {
		name, method, path, body string
		code                     int
		typ, message             string
	}{
		{"unknown event", "POST", browsePath, one(`"event":"post.nonsense","target_url":"https://example.com/x"`), 422, "ValidationError", "unknown webhook event"},
		{"uppercase event", "POST", browsePath, one(`"event":"Post.Added","target_url":"https://example.com/x"`), 422, "ValidationError", "lowercase"},
		{"event too long", "POST", browsePath, one(`"event":"` + strings.Repeat("a", 51) + `","target_url":"https://example.com/x"`), 422, "ValidationError", "50"},
		{"missing event", "POST", browsePath, one(`"target_url":"https://example.com/x"`), 422, "ValidationError", "event is required"},
		{"missing target_url", "POST", browsePath, one(`"event":"post.added"`), 422, "ValidationError", "target_url is required"},
		{"relative URL", "POST", browsePath, one(`"event":"post.added","target_url":"/hook"`), 422, "ValidationError", "absolute http(s) URL"},
		{"ftp URL", "POST", browsePath, one(`"event":"post.added","target_url":"ftp://example.com/x"`), 422, "ValidationError", "absolute http(s) URL"},
		{"URL too long", "POST", browsePath, one(`"event":"post.added","target_url":"https://example.com/` + strings.Repeat("a", 2000) + `"`), 422, "ValidationError", "2000"},
		{"duplicate pair", "POST", browsePath, one(`"event":"post.added","target_url":"https://example.com/a"`), 422, "ValidationError", "Target URL has already been used for this event."},
		{"duplicate pair, other case", "POST", browsePath, one(`"event":"post.added","target_url":"HTTPS://EXAMPLE.COM/a"`), 422, "ValidationError", "Target URL has already been used for this event."},
		{"event not a string", "POST", browsePath, one(`"event":42,"target_url":"https://example.com/x"`), 422, "ValidationError", "event must be a string"},
		{"two webhooks", "POST", browsePath, `{"webhooks":[{"event":"post.added","target_url":"https://example.com/1"},{"event":"post.added","target_url":"https://example.com/2"}]}`, 422, "ValidationError", "exactly one"},
		{"no root key", "POST", browsePath, `{"event":"post.added","target_url":"https://example.com/x"}`, 400, "BadRequestError", "No root key ('webhooks') provided."},
		{"not JSON", "POST", browsePath, `{"webhooks":[`, 400, "BadRequestError", "not valid JSON"},
		{"too large", "POST", browsePath, one(`"event":"post.added","target_url":"https://example.com/x","name":"` + strings.Repeat("n", 70<<10) + `"`), 413, "RequestEntityTooLargeError", "larger"},
		{"PUT unknown id", "PUT", browsePath + "0123456789abcdef01234567/", one(`"name":"x"`), 404, "NotFoundError", "Webhook not found."},
		{"PUT empty target_url", "PUT", browsePath + existing + "/", one(`"target_url":""`), 422, "ValidationError", "target_url is required"},
		{"PUT unknown event", "PUT", browsePath + existing + "/", one(`"event":"nope.nope"`), 422, "ValidationError", "unknown webhook event"},
		{"PUT onto another's pair", "PUT", browsePath + other + "/", one(`"event":"post.added","target_url":"https://example.com/a"`), 422, "ValidationError", "Target URL has already been used for this event."},
		{"PUT bad status", "PUT", browsePath + existing + "/", one(`"status":"paused"`), 422, "ValidationError", "active or disabled"},
		{"PUT no root key", "PUT", browsePath + existing + "/", `{}`, 400, "BadRequestError", "No root key"},
		{"DELETE unknown id", "DELETE", browsePath + "0123456789abcdef01234567/", "", 404, "NotFoundError", "Webhook not found."},
		{"GET unknown id", "GET", browsePath + "0123456789abcdef01234567/", "", 404, "NotFoundError", "Webhook not found."},
	}
	for _, c := range cases {
		code, body := a.do(t, c.method, c.path, a.token(t), c.body)
		msg := wantError(t, c.name, code, body, c.code, c.typ)
		if msg != "" && !strings.Contains(msg, c.message) {
			t.Errorf("%s: message %q, want it to contain %q", c.name, msg, c.message)
		}
	}
	// Nothing invalid was stored, and the webhooks refused edits are unchanged.
	code, body = a.do(t, "GET", browsePath, a.token(t), "")
	wb := decodeWebhooks(t, "GET", body)
	if code != http.StatusOK || len(wb.Webhooks) != 2 {
		t.Fatalf("after refusals: %d webhooks (%s)", len(wb.Webhooks), body)
	}
	for _, w := range wb.Webhooks {
		if w["id"] == existing && (w["target_url"] != "https://example.com/a" || w["event"] != "post.added" || w["status"] != "active") {
			t.Errorf("refused edits changed the webhook: %v", w)
		}
	}
}

func TestAdminAPINeverLogsSecrets(t *testing.T) {
	a := newAdminAPI(t, nil)
	const secret = "very-secret-signing-value"
	code, body := a.do(t, "POST", browsePath, a.token(t), `{"webhooks":[{"event":"post.added","target_url":"https://example.com/a","secret":"`+secret+`"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("POST: %d %s", code, body)
	}
	id := decodeWebhooks(t, "POST", body).Webhooks[0]["id"].(string)
	a.do(t, "PUT", browsePath+id+"/", a.token(t), `{"webhooks":[{"secret":"`+secret+`2"}]}`)
	a.do(t, "DELETE", browsePath+id+"/", a.token(t), "")
	logs := a.logs.String()
	if !strings.Contains(logs, id) {
		t.Errorf("admin actions were not logged: %s", logs)
	}
	if strings.Contains(logs, secret) {
		t.Errorf("a webhook secret appears in the logs: %s", logs)
	}
}
