package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/testutil"
)

type replayBody struct {
	Replay struct {
		ID       int64  `json:"id"`
		Status   string `json:"status"`
		Created  int64  `json:"created"`
		Existing int64  `json:"already_existing"`
	} `json:"replay"`
}

// A replay through the audit API: a key replays to its own integration's webhooks only
// (another's and the operator's are refused, and their replays are invisible to it),
// the body is checked field by field (no Stripe signing through the API), and the
// replay runs to its end on the running relay, one delivery per event.
func TestReplayThroughTheAuditAPIIsScopedToTheKeysOwnWebhooks(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	ctx := context.Background()
	rc := testutil.NewReceiver(t, nil)
	for range 12 {
		auditEmit(t, a.db, "post.published", `{"post":{"current":{"id":"p1"}}}`)
	}
	if _, err := a.db.Pool.Exec(ctx, `UPDATE relay.outbox SET created_at = created_at - interval '2 days'`); err != nil {
		t.Fatal(err)
	}
	mine := a.addWebhook(t, a.token(t), "post.published", rc.URL()+"/mine")
	var operators string
	if err := a.db.Pool.QueryRow(ctx, `INSERT INTO relay.webhooks (event, target_url) VALUES ('post.published', $1) RETURNING id`,
		rc.URL()+"/operator").Scan(&operators); err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := a.keys.Create(ctx, "another client")
	if err != nil {
		t.Fatal(err)
	}
	other := ghostToken(t, otherKey, time.Now(), "/admin/")
	auditRunRelay(t, a.db)

	for _, c := range []struct {
		name, token, body string
		code              int
		says              string
	}{
		{"another integration's webhook", other, `{"webhook_id":"` + mine + `","since":"3d"}`, http.StatusForbidden, "permission"},
		{"the operator's webhook", a.token(t), `{"webhook_id":"` + operators + `","since":"3d"}`, http.StatusForbidden, "permission"},
		{"Stripe signing asked for", a.token(t), `{"webhook_id":"` + mine + `","since":"3d","stripe_signature":true}`, http.StatusUnprocessableEntity, "unknown field"},
		{"no since", a.token(t), `{"webhook_id":"` + mine + `"}`, http.StatusUnprocessableEntity, "since"},
		{"a bad time", a.token(t), `{"webhook_id":"` + mine + `","since":"soon"}`, http.StatusUnprocessableEntity, "since"},
		{"a bad pattern", a.token(t), `{"webhook_id":"` + mine + `","since":"3d","event":"x'; --"}`, http.StatusUnprocessableEntity, "event pattern"},
		{"no webhook", a.token(t), `{"since":"3d"}`, http.StatusUnprocessableEntity, "webhook_id"},
		{"a huge body", a.token(t), `{"webhook_id":"` + strings.Repeat("x", 8000) + `"}`, http.StatusRequestEntityTooLarge, ""},
		{"no key", "", `{"webhook_id":"` + mine + `","since":"3d"}`, http.StatusForbidden, ""},
	} {
		code, body := a.do(t, "POST", "/relay/v1/replays", c.token, c.body)
		if code != c.code || !strings.Contains(string(body), c.says) {
			t.Errorf("%s: %d %s; want %d saying %q", c.name, code, body, c.code, c.says)
		}
	}

	code, body := a.do(t, "POST", "/relay/v1/replays", a.token(t), `{"webhook_id":"`+mine+`","since":"3d"}`)
	var started replayBody
	if code != http.StatusAccepted || json.Unmarshal(body, &started) != nil || started.Replay.ID == 0 {
		t.Fatalf("start: %d %s", code, body)
	}
	path := "/relay/v1/replays/" + itoa(started.Replay.ID)
	var done replayBody
	testutil.Eventually(t, 30*time.Second, func() bool {
		code, body := a.do(t, "GET", path, a.token(t), "")
		return code == http.StatusOK && json.Unmarshal(body, &done) == nil && done.Replay.Status == "done"
	}, "the replay did not finish")
	if done.Replay.Created != 12 {
		t.Errorf("replay %+v, want 12 created", done.Replay)
	}
	rc.WaitFor(t, 12, 30*time.Second)

	if code, body := a.do(t, "GET", path, other, ""); code != http.StatusNotFound {
		t.Errorf("another key reads the replay: %d %s", code, body)
	}
	if code, body := a.do(t, "GET", "/relay/v1/replays", other, ""); code != http.StatusOK || strings.Contains(string(body), mine) {
		t.Errorf("another key lists: %d %s", code, body)
	}
	if code, body := a.do(t, "GET", "/relay/v1/replays?webhook="+mine, a.token(t), ""); code != http.StatusOK || !strings.Contains(string(body), `"status":"done"`) {
		t.Errorf("list: %d %s", code, body)
	}
	if code, body := a.do(t, "GET", "/relay/v1/replays?colour=red", a.token(t), ""); code != http.StatusUnprocessableEntity {
		t.Errorf("unknown parameter: %d %s", code, body)
	}
	if code, body := a.do(t, "POST", path+"/cancel", a.token(t), ""); code != http.StatusConflict {
		t.Errorf("cancel a finished replay: %d %s", code, body)
	}
	time.Sleep(300 * time.Millisecond)
	if n := rc.Count(); n != 12 {
		t.Errorf("receiver got %d, want 12", n)
	}
}
