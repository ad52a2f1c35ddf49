package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/webhook"
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

// addWebhook adds a webhook with a's key and returns its id.
func (a *adminAPI) addWebhook(t testing.TB, token, event, target string) string {
	t.Helper()
	code, body := a.do(t, "POST", browsePath, token, `{"webhooks":[{"event":"`+event+`","target_url":"`+target+`"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("add %s %s: %d %s", event, target, code, body)
	}
	return decodeWebhooks(t, "add", body).Webhooks[0]["id"].(string)
}

func TestAdminAPIAddEditDeleteAsGhost(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)

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
		"secret": "s3cret", "api_version": "v6.65", "integration_id": a.integration, "status": "active",
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
		`{"webhooks":[{"event":"post.*","target_url":"https://example.com/all"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("POST without slash: %d %s", code, body)
	}
	code, body = a.do(t, "POST", "/ghost/api/v3/admin/webhooks/", ghostToken(t, a.key, time.Now(), "/v3/admin/"),
		`{"webhooks":[{"event":"member.added","target_url":"https://example.com/members"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("POST on /v3/: %d %s", code, body)
	}
	third := decodeWebhooks(t, "POST", body).Webhooks[0]["id"].(string)

	// GET the collection (the relay's), with and without slash; GET one.
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
	// The relay's status field (Ghost drops it): disable, then re-enable.
	code, body = a.do(t, "PUT", "/ghost/api/admin/webhooks/"+id, a.token(t), `{"webhooks":[{"status":"disabled"}]}`)
	if code != http.StatusOK || decodeWebhooks(t, "PUT", body).Webhooks[0]["status"] != "disabled" {
		t.Errorf("PUT status disabled without slash: %d %s", code, body)
	}
	code, body = a.do(t, "PUT", "/ghost/api/admin/webhooks/"+id, a.token(t), `{"webhooks":[{"status":"active"}]}`)
	if code != http.StatusOK || decodeWebhooks(t, "PUT", body).Webhooks[0]["status"] != "active" {
		t.Errorf("PUT status active: %d %s", code, body)
	}

	// DELETE: 204 with no body, then Ghost's 404.
	code, body = a.do(t, "DELETE", "/ghost/api/admin/webhooks/"+id+"/", a.token(t), "")
	if code != http.StatusNoContent || len(body) != 0 {
		t.Errorf("DELETE: %d %q, want 204 and no body", code, body)
	}
	code, body = a.do(t, "DELETE", "/ghost/api/admin/webhooks/"+id+"/", a.token(t), "")
	wantGhostAnswer(t, "DELETE again", code, body, ghostAnswer{status: 404, typ: "NotFoundError",
		message: "Resource not found error, cannot delete webhook.", context: "Webhook not found."})
	code, body = a.do(t, "DELETE", "/ghost/api/v3/admin/webhooks/"+third, ghostToken(t, a.key, time.Now(), "/v3/admin/"), "")
	if code != http.StatusNoContent {
		t.Errorf("DELETE on /v3/ without slash: %d %s", code, body)
	}
}

// TestAdminAPIErrorsAreGhostsWordForWord: for every way Ghost 6.65 refuses a webhook
// request, the relay answers the same status and the same error object (message,
// context, type, details, property, help, code), as captured from the real Ghost.
func TestAdminAPIErrorsAreGhostsWordForWord(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	existing := a.addWebhook(t, a.token(t), "post.published", "http://example.com/a")
	const unknownID = "aaaaaaaaaaaaaaaaaaaaaaaa"
	one := func(fields string) string { return `{"webhooks":[{` + fields + `}]}` }
	validation := func(action, context string) ghostAnswer {
		return ghostAnswer{status: 422, typ: "ValidationError", message: "Validation error, cannot " + action + " webhook.", context: context}
	}
	schema := func(action, property, details string) ghostAnswer {
		v := validation(action, "Validation failed for "+property+".")
		v.property, v.details = property, details
		return v
	}
	noRoot := func(action string) ghostAnswer {
		return ghostAnswer{status: 400, typ: "BadRequestError", message: "Request not understood error, cannot " + action + " webhook.",
			context: "No root key ('webhooks') provided."}
	}
	notJSON := ghostAnswer{status: 400, typ: "InternalServerError", message: "An unexpected error occurred, please try again.", code: "UNEXPECTED_ERROR"}
	edit := browsePath + existing + "/"
	cases := []struct {
		name, method, path, body string
		want                     ghostAnswer
		anyContext               bool // the JSON parser's own words
	}{
		{"add duplicate (event, target_url)", "POST", browsePath, one(`"event":"post.published","target_url":"http://example.com/a"`),
			validation("save", "Target URL has already been used for this event."), false},
		{"add duplicate, URL in other case", "POST", browsePath, one(`"event":"post.published","target_url":"HTTP://EXAMPLE.COM/a"`),
			validation("save", "Target URL has already been used for this event."), false},
		{"add event in other case", "POST", browsePath, one(`"event":"post.PUBLISHED","target_url":"http://example.com/a"`),
			schema("save", "event", `[{"instancePath":"/webhooks/0/event","schemaPath":"webhooks#/definitions/webhook/properties/event/isLowercase","keyword":"isLowercase","params":{},"message":"must pass \"isLowercase\" keyword validation"}]`), false},
		{"add without target_url", "POST", browsePath, one(`"event":"post.published"`),
			schema("save", "0", `[{"instancePath":"/webhooks/0","schemaPath":"#/properties/webhooks/items/required","keyword":"required","params":{"missingProperty":"target_url"},"message":"must have required property 'target_url'"}]`), false},
		{"add without event", "POST", browsePath, one(`"target_url":"http://example.com/noevent"`),
			schema("save", "0", `[{"instancePath":"/webhooks/0","schemaPath":"#/properties/webhooks/items/required","keyword":"required","params":{"missingProperty":"event"},"message":"must have required property 'event'"}]`), false},
		{"add target_url not a URL", "POST", browsePath, one(`"event":"post.published","target_url":"not a url"`),
			schema("save", "target_url", `[{"instancePath":"/webhooks/0/target_url","schemaPath":"webhooks#/definitions/webhook/properties/target_url/format","keyword":"format","params":{"format":"uri-reference"},"message":"must match format \"uri-reference\""}]`), false},
		{"add target_url empty", "POST", browsePath, one(`"event":"post.published","target_url":""`),
			validation("save", "Value in [webhooks.target_url] cannot be blank. webhooks.target_url"), false},
		{"add event empty", "POST", browsePath, one(`"event":"","target_url":"http://example.com/e"`),
			validation("save", "Value in [webhooks.event] cannot be blank. webhooks.event"), false},
		{"add event a number", "POST", browsePath, one(`"event":5,"target_url":"http://example.com/num"`),
			schema("save", "event", `[{"instancePath":"/webhooks/0/event","schemaPath":"webhooks#/definitions/webhook/properties/event/type","keyword":"type","params":{"type":"string"},"message":"must be string"}]`), false},
		{"add name of 192 characters", "POST", browsePath, one(`"event":"post.published","name":"` + strings.Repeat("n", 192) + `","target_url":"http://example.com/long"`),
			schema("save", "name", `[{"instancePath":"/webhooks/0/name","schemaPath":"webhooks#/definitions/webhook/properties/name/maxLength","keyword":"maxLength","params":{"limit":191},"message":"must NOT have more than 191 characters"}]`), false},
		{"add target_url over 2000 characters", "POST", browsePath, one(`"event":"post.published","target_url":"http://example.com/` + strings.Repeat("u", 2000) + `"`),
			schema("save", "target_url", `[{"instancePath":"/webhooks/0/target_url","schemaPath":"webhooks#/definitions/webhook/properties/target_url/maxLength","keyword":"maxLength","params":{"limit":2000},"message":"must NOT have more than 2000 characters"}]`), false},
		{"add two webhooks", "POST", browsePath, `{"webhooks":[{"event":"post.added","target_url":"http://example.com/1"},{"event":"post.added","target_url":"http://example.com/2"}]}`,
			schema("save", "webhooks", `[{"instancePath":"/webhooks","schemaPath":"#/properties/webhooks/maxItems","keyword":"maxItems","params":{"limit":1},"message":"must NOT have more than 1 items"}]`), false},
		{"add without the webhooks root key", "POST", browsePath, `{"event":"post.published","target_url":"http://example.com/x"}`, noRoot("save"), false},
		{"add webhooks: []", "POST", browsePath, `{"webhooks":[]}`, noRoot("save"), false},
		{"add webhooks: {object}", "POST", browsePath, `{"webhooks":{"event":"post.published","target_url":"http://example.com/x"}}`, noRoot("save"), false},
		{"add no body", "POST", browsePath, "", noRoot("save"), false},
		{"add body not JSON", "POST", browsePath, `{not json`, notJSON, true},
		{"edit unknown id", "PUT", browsePath + unknownID + "/", one(`"name":"x"`),
			ghostAnswer{status: 404, typ: "NotFoundError", message: "Resource not found error, cannot edit webhook.", context: "Webhook not found."}, false},
		{"edit id not an id", "PUT", browsePath + "nope/", one(`"name":"x"`),
			validation("edit", "Validation (matches) failed for id undefined.id"), false},
		{"delete unknown id", "DELETE", browsePath + unknownID + "/", "",
			ghostAnswer{status: 404, typ: "NotFoundError", message: "Resource not found error, cannot delete webhook.", context: "Webhook not found."}, false},
		{"delete id not an id", "DELETE", browsePath + "nope/", "",
			validation("delete", "Validation (matches) failed for id undefined.id"), false},
		{"edit with {}", "PUT", edit, `{"webhooks":[{}]}`, noRoot("edit"), false},
		{"edit without the webhooks root key", "PUT", edit, `{"event":"post.added"}`, noRoot("edit"), false},
		{"edit body not JSON", "PUT", edit, `{bad`, notJSON, true},
		{"edit with another id in the body", "PUT", edit, one(`"api_version":"v9","id":"bbbbbbbbbbbbbbbbbbbbbbbb","integration_id":"zzz"`),
			ghostAnswer{status: 400, typ: "BadRequestError", message: "Request not understood error, cannot edit webhook.", context: "Invalid id provided."}, false},
		{"edit target_url not a URL", "PUT", edit, one(`"target_url":"not a url"`),
			schema("edit", "target_url", `[{"instancePath":"/webhooks/0/target_url","schemaPath":"#/properties/webhooks/items/properties/target_url/format","keyword":"format","params":{"format":"uri-reference"},"message":"must match format \"uri-reference\""}]`), false},
		{"edit target_url null", "PUT", edit, one(`"target_url":null`),
			schema("edit", "target_url", `[{"instancePath":"/webhooks/0/target_url","schemaPath":"#/properties/webhooks/items/properties/target_url/type","keyword":"type","params":{"type":"string"},"message":"must be string"}]`), false},
		{"edit event null", "PUT", edit, one(`"event":null`),
			schema("edit", "event", `[{"instancePath":"/webhooks/0/event","schemaPath":"#/properties/webhooks/items/properties/event/type","keyword":"type","params":{"type":"string"},"message":"must be string"}]`), false},
		{"edit event uppercase", "PUT", edit, one(`"event":"POST.ADDED","name":"renamed","secret":"s2","target_url":"http://example.com/edited"`),
			schema("edit", "event", `[{"instancePath":"/webhooks/0/event","schemaPath":"#/properties/webhooks/items/properties/event/isLowercase","keyword":"isLowercase","params":{},"message":"must pass \"isLowercase\" keyword validation"}]`), false},
		{"edit event and target_url empty", "PUT", edit, one(`"event":"","target_url":""`),
			validation("edit", "Value in [webhooks.event] cannot be blank. webhooks.event"), false},
	}
	for _, c := range cases {
		code, body := a.do(t, c.method, c.path, a.token(t), c.body)
		want := c.want
		if c.anyContext {
			var e struct{ Errors []ghostError }
			if json.Unmarshal(body, &e) == nil && len(e.Errors) == 1 && e.Errors[0].Context != nil && *e.Errors[0].Context != "" {
				want.context = *e.Errors[0].Context
			} else {
				t.Errorf("%s: no parser message in the context: %s", c.name, body)
			}
		}
		wantGhostAnswer(t, c.name, code, body, want)
	}
	// A body Ghost does not read (not application/json) is Ghost's empty body.
	req, _ := http.NewRequest("POST", a.srv.URL+browsePath, strings.NewReader(one(`"event":"post.added","target_url":"http://example.com/t"`)))
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Ghost "+a.token(t))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var raw json.RawMessage
	_ = json.NewDecoder(resp.Body).Decode(&raw)
	resp.Body.Close()
	wantGhostAnswer(t, "add as text/plain", resp.StatusCode, raw, noRoot("save"))

	// Nothing refused was stored, and the webhook refused edits is unchanged.
	code, body := a.do(t, "GET", browsePath, a.token(t), "")
	wb := decodeWebhooks(t, "GET", body)
	if code != http.StatusOK || len(wb.Webhooks) != 1 {
		t.Fatalf("after refusals: %d webhooks (%s)", len(wb.Webhooks), body)
	}
	if w := wb.Webhooks[0]; w["target_url"] != "http://example.com/a" || w["event"] != "post.published" || w["name"] != nil {
		t.Errorf("refused edits changed the webhook: %v", w)
	}
}

// TestWebhooksBelongToTheIntegrationOfTheKeyThatAddedThem: the body cannot choose the
// integration, on add or on edit; a key lists only its own integration's webhooks.
func TestWebhooksBelongToTheIntegrationOfTheKeyThatAddedThem(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	other, _, err := a.keys.Create(context.Background(), "other")
	if err != nil {
		t.Fatal(err)
	}
	code, body := a.do(t, "POST", browsePath, a.token(t),
		`{"webhooks":[{"event":"post.published","target_url":"http://example.com/intid","integration_id":"`+other.Integration.ID+`"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("add: %d %s", code, body)
	}
	w := decodeWebhooks(t, "add", body).Webhooks[0]
	if w["integration_id"] != a.integration {
		t.Errorf("add with another integration_id in the body: integration_id %v, want the key's %s", w["integration_id"], a.integration)
	}
	id := w["id"].(string)
	code, body = a.do(t, "PUT", browsePath+id+"/", a.token(t), `{"webhooks":[{"integration_id":"`+other.Integration.ID+`"}]}`)
	if code != http.StatusOK || decodeWebhooks(t, "edit", body).Webhooks[0]["integration_id"] != a.integration {
		t.Errorf("edit with integration_id: %d %s, want it ignored", code, body)
	}
	var stored string
	if err := a.db.Pool.QueryRow(context.Background(), `SELECT integration_id FROM relay.webhooks WHERE id = $1`, id).Scan(&stored); err != nil || stored != a.integration {
		t.Errorf("stored integration_id %q (%v)", stored, err)
	}
	otherKey := newKey(t, a)
	a.addWebhook(t, ghostToken(t, otherKey, time.Now(), "/admin/"), "post.published", "http://example.com/theirs")
	code, body = a.do(t, "GET", browsePath, a.token(t), "")
	if wb := decodeWebhooks(t, "GET", body); code != http.StatusOK || len(wb.Webhooks) != 1 || wb.Webhooks[0]["id"] != id {
		t.Errorf("GET lists %s, want only the key's own webhook", body)
	}
}

// TestOneIntegrationCannotTouchAnothersWebhooks: editing, deleting or reading another
// integration's webhook, or the operator's (added with the CLI, no integration), is
// refused with Ghost's 403, and changes nothing.
func TestOneIntegrationCannotTouchAnothersWebhooks(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	theirs := a.addWebhook(t, ghostToken(t, newKey(t, a), time.Now(), "/admin/"), "post.published", "http://example.com/theirs")
	ev, url := "tag.added", "http://example.com/operator"
	operators, err := webhook.Store{Pool: a.db.Pool}.Add(context.Background(), webhook.Input{Event: &ev, TargetURL: &url})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{theirs, operators.ID} {
		code, body := a.do(t, "PUT", browsePath+id+"/", a.token(t), `{"webhooks":[{"name":"stolen"}]}`)
		wantGhostAnswer(t, "edit "+id, code, body, ghostAnswer{status: 403, typ: "NoPermissionError", message: "Permission error, cannot edit webhook.",
			context: "You do not have permission to edit this webhook. You may only edit webhooks that belong to the authenticated integration. Check the supplied Admin API Key."})
		code, body = a.do(t, "DELETE", browsePath+id+"/", a.token(t), "")
		wantGhostAnswer(t, "delete "+id, code, body, ghostAnswer{status: 403, typ: "NoPermissionError", message: "Permission error, cannot delete webhook.",
			context: "You do not have permission to destroy this webhook. You may only destroy webhooks that belong to the authenticated integration. Check the supplied Admin API Key."})
		code, body = a.do(t, "GET", browsePath+id+"/", a.token(t), "")
		wantError(t, "read "+id, code, body, 403, "NoPermissionError")
	}
	var n int
	if err := a.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.webhooks WHERE name IS NULL`).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d untouched webhooks (%v), want both", n, err)
	}
}

// TestNullClearsNameAndSecret: as in Ghost, null (or "") removes a webhook's name and
// secret; absent leaves them.
func TestNullClearsNameAndSecret(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	code, body := a.do(t, "POST", browsePath, a.token(t), `{"webhooks":[{"event":"post.published","target_url":"http://example.com/a","name":"n","secret":"s"}]}`)
	if code != http.StatusCreated {
		t.Fatalf("add: %d %s", code, body)
	}
	id := decodeWebhooks(t, "add", body).Webhooks[0]["id"].(string)
	step := func(body string, wantName, wantSecret any) {
		t.Helper()
		code, resp := a.do(t, "PUT", browsePath+id+"/", a.token(t), body)
		w := decodeWebhooks(t, body, resp)
		if code != http.StatusOK || w.Webhooks[0]["name"] != wantName || w.Webhooks[0]["secret"] != wantSecret {
			t.Errorf("PUT %s: %d %s, want name %v secret %v", body, code, resp, wantName, wantSecret)
		}
	}
	step(`{"webhooks":[{"api_version":"v6"}]}`, "n", "s")
	step(`{"webhooks":[{"secret":null}]}`, "n", nil)
	step(`{"webhooks":[{"name":null}]}`, nil, nil)
	step(`{"webhooks":[{"name":"again","secret":"again"}]}`, "again", "again")
	step(`{"webhooks":[{"name":"","secret":""}]}`, nil, nil)
	code, body = a.do(t, "POST", browsePath, a.token(t), `{"webhooks":[{"event":"post.published","target_url":"http://example.com/b","name":null,"secret":""}]}`)
	if w := decodeWebhooks(t, "add", body).Webhooks[0]; code != http.StatusCreated || w["name"] != nil || w["secret"] != nil {
		t.Errorf("add with null name and empty secret: %d %s", code, body)
	}
}

// TestWhatTheRelayCannotDeliverIsRefusedInGhostsShape: the deliberate differences.
// Ghost takes any lowercase event, any URI reference and an edit onto another webhook's
// (event, target_url); the relay refuses them, with Ghost's message and its own reason.
func TestWhatTheRelayCannotDeliverIsRefusedInGhostsShape(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	first := a.addWebhook(t, a.token(t), "post.added", "http://example.com/a")
	second := a.addWebhook(t, a.token(t), "post.added", "http://example.com/b")
	one := func(fields string) string { return `{"webhooks":[{` + fields + `}]}` }
	cases := []struct {
		name, method, path, body string
		want                     ghostAnswer
	}{
		{"unknown event", "POST", browsePath, one(`"event":"post.frobbed","target_url":"http://example.com/x"`),
			ghostAnswer{status: 422, typ: "ValidationError", message: "Validation error, cannot save webhook.",
				context: "Unknown webhook event 'post.frobbed'.", property: "event",
				help: "Use an event the relay knows (relay.event_types), a trailing wildcard such as post.*, or *."}},
		{"relative URL", "POST", browsePath, one(`"event":"post.added","target_url":"/relative/path"`),
			ghostAnswer{status: 422, typ: "ValidationError", message: "Validation error, cannot save webhook.",
				context: `target_url must be an absolute http:// or https:// URL, got "/relative/path".`, property: "target_url",
				help: "The relay delivers to absolute http:// and https:// URLs only."}},
		{"ftp URL", "POST", browsePath, one(`"event":"post.added","target_url":"ftp://x"`),
			ghostAnswer{status: 422, typ: "ValidationError", message: "Validation error, cannot save webhook.",
				context: `target_url must be an absolute http:// or https:// URL, got "ftp://x".`, property: "target_url",
				help: "The relay delivers to absolute http:// and https:// URLs only."}},
		{"whsec_ secret that is not base64", "POST", browsePath, one(`"event":"post.added","target_url":"http://example.com/w","secret":"whsec_!!"`),
			ghostAnswer{status: 422, typ: "ValidationError", message: "Validation error, cannot save webhook.",
				context: "A secret that starts with whsec_ must be followed by base64 (the Standard Webhooks key).", property: "secret",
				help: "Use any text, or a Standard Webhooks secret: whsec_ followed by base64."}},
		{"edit onto another webhook's pair", "PUT", browsePath + second + "/", one(`"target_url":"http://example.com/a"`),
			ghostAnswer{status: 422, typ: "ValidationError", message: "Validation error, cannot edit webhook.",
				context: "Target URL has already been used for this event."}},
		{"edit to an unknown event", "PUT", browsePath + first + "/", one(`"event":"post.frobbed"`),
			ghostAnswer{status: 422, typ: "ValidationError", message: "Validation error, cannot edit webhook.",
				context: "Unknown webhook event 'post.frobbed'.", property: "event",
				help: "Use an event the relay knows (relay.event_types), a trailing wildcard such as post.*, or *."}},
		{"status the relay does not have", "PUT", browsePath + first + "/", one(`"status":"paused"`),
			ghostAnswer{status: 422, typ: "ValidationError", message: "Validation error, cannot edit webhook.",
				context: "Validation failed for status.", property: "status",
				help: `status is the relay's: "active" re-enables a disabled webhook, "disabled" disables it.`}},
	}
	for _, c := range cases {
		code, body := a.do(t, c.method, c.path, a.token(t), c.body)
		wantGhostAnswer(t, c.name, code, body, c.want)
	}
}

// TestRoutesGhostDoesNotHaveAnswerAsGhost: unknown paths and versions get Ghost's
// "not found", told apart by the Accept-Version the client sent, without a token.
func TestRoutesGhostDoesNotHaveAnswerAsGhost(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	get := func(path, accept string) (int, []byte) {
		req, _ := http.NewRequest("GET", a.srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept-Version", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var raw json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&raw)
		if v := resp.Header.Get("Content-Version"); v != "v6.65" {
			t.Errorf("%s: Content-Version %q, want Ghost's v6.65", path, v)
		}
		return resp.StatusCode, raw
	}
	behind := ghostAnswer{status: 406, typ: "RequestNotAcceptableError", message: "Request could not be served, the endpoint was not found.",
		context: "Provided client accept-version v6.0 is behind current Ghost version v6.65.", help: "Try upgrading your Ghost API client.", code: "UPDATE_CLIENT"}
	notFound := ghostAnswer{status: 404, typ: "NotFoundError", message: "Resource not found"}
	for _, c := range []struct {
		path, accept string
		want         ghostAnswer
	}{
		{"/ghost/api/v5/admin/webhooks/", "v6.0", behind},
		{"/ghost/api/v5/admin/webhooks/", "", notFound},
		{"/ghost/api/admin/nonsense/", "v6.65", notFound},
		{"/ghost/api/admin/nonsense/", "v7.0", ghostAnswer{status: 406, typ: "RequestNotAcceptableError",
			message: "Request could not be served, the endpoint was not found.", context: "Provided client accept-version v7.0 is ahead of current Ghost version v6.65.",
			help: "Try upgrading your Ghost install.", code: "UPDATE_GHOST"}},
		{"/ghost/api/admin/nonsense/", "banana", ghostAnswer{status: 400, typ: "BadRequestError", message: "Requested version is not supported."}},
		// Ghost rewrites the v3 prefix and assumes Accept-Version v3.0.
		{"/ghost/api/v3/admin/nonsense/", "", ghostAnswer{status: 406, typ: "RequestNotAcceptableError",
			message: "Request could not be served, the endpoint was not found.", context: "Provided client accept-version v3.0 is behind current Ghost version v6.65.",
			help: "Try upgrading your Ghost API client.", code: "UPDATE_CLIENT"}},
	} {
		code, body := get(c.path, c.accept)
		wantGhostAnswer(t, c.path+" Accept-Version "+c.accept, code, body, c.want)
	}
}

func TestAdminAPINeverLogsSecrets(t *testing.T) {
	t.Parallel()
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

// TestRevokingAKeyRemovesItsIntegrationsWebhooksAndKeepsTheirAuditTrail: as deleting an
// integration in Ghost removes its webhooks; here their deliveries and attempts stay,
// pending ones cancelled, and other integrations' webhooks are untouched.
func TestRevokingAKeyRemovesItsIntegrationsWebhooksAndKeepsTheirAuditTrail(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	ctx := context.Background()
	mine := a.addWebhook(t, a.token(t), "post.published", "http://example.com/mine")
	theirs := a.addWebhook(t, ghostToken(t, newKey(t, a), time.Now(), "/admin/"), "post.published", "http://example.com/theirs")
	done := auditEmit(t, a.db, "post.published", `{"n":1}`)
	waiting := auditEmit(t, a.db, "post.published", `{"n":2}`)
	var doneDelivery int64
	if err := a.db.Pool.QueryRow(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts) VALUES ($1, $2, 'succeeded', 1) RETURNING id`,
		done, mine).Scan(&doneDelivery); err != nil {
		t.Fatal(err)
	}
	if _, err := a.db.Pool.Exec(ctx, `INSERT INTO relay.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code) VALUES ($1, 1, now(), 5, 200)`, doneDelivery); err != nil {
		t.Fatal(err)
	}
	if _, err := a.db.Pool.Exec(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, next_attempt_at) VALUES ($1, $2, 'pending', 0, now()), ($1, $3, 'pending', 0, now())`,
		waiting, mine, theirs); err != nil {
		t.Fatal(err)
	}

	revoked, err := a.keys.Revoke(ctx, strings.SplitN(a.key, ":", 2)[0])
	if err != nil || revoked.WebhooksRemoved != 1 || revoked.Integration.ID != a.integration {
		t.Fatalf("revoke: %+v %v", revoked, err)
	}
	var webhooks []string
	rows, _ := a.db.Pool.Query(ctx, `SELECT id FROM relay.webhooks ORDER BY id`)
	for rows.Next() {
		var id string
		_ = rows.Scan(&id)
		webhooks = append(webhooks, id)
	}
	if len(webhooks) != 1 || webhooks[0] != theirs {
		t.Errorf("webhooks after revocation: %v, want only the other integration's %s", webhooks, theirs)
	}
	statuses := map[string]string{}
	rows, _ = a.db.Pool.Query(ctx, `SELECT webhook_id || ':' || event_id::text, status FROM relay.deliveries`)
	for rows.Next() {
		var k, s string
		_ = rows.Scan(&k, &s)
		statuses[k] = s
	}
	for k, want := range map[string]string{mine + ":" + done: "succeeded", mine + ":" + waiting: "cancelled", theirs + ":" + waiting: "pending"} {
		if statuses[k] != want {
			t.Errorf("delivery %s: %q, want %q (all: %v)", k, statuses[k], want, statuses)
		}
	}
	var attempts int
	if err := a.db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.delivery_attempts WHERE delivery_id = $1`, doneDelivery).Scan(&attempts); err != nil || attempts != 1 {
		t.Errorf("attempts kept: %d (%v)", attempts, err)
	}
	// Revoking again changes nothing and removes nothing more.
	again, err := a.keys.Revoke(ctx, strings.SplitN(a.key, ":", 2)[0])
	if err != nil || again.WebhooksRemoved != 0 || !again.RevokedAt.Equal(*revoked.RevokedAt) {
		t.Errorf("second revoke: %+v %v", again, err)
	}
}
