package ghost_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/relayhq/relay/testutil"
	"github.com/relayhq/relay/testutil/ghost"
)

// EnvUpdateFixtures makes TestAdminErrorFixtures rewrite the answers in
// testdata/admin_errors.json from the real Ghost instead of comparing them.
const EnvUpdateFixtures = "RELAY_GHOST_UPDATE_FIXTURES"

// The fixture file says what Ghost answers; this replays every case against the real
// Ghost and compares status and body byte for byte (error ids aside).
func TestAdminErrorFixtures(t *testing.T) {
	// Not parallel: it adds webhooks to the shared site, which fire for everyone's posts,
	// and compares answers that depend on the site's webhooks.
	fx, err := ghost.LoadAdminFixtures()
	if err != nil {
		t.Fatal(err)
	}
	if len(fx.Cases) < 50 {
		t.Fatalf("only %d cases in the fixture file", len(fx.Cases))
	}
	site := ghost.Shared(t)
	key := site.AdminKey()
	otherKey := site.NewIntegration(t, "fixtures-other")
	rc := testutil.NewReceiver(t, nil)
	own := site.AddWebhook(t, key, "post.published", rc.URL()+"/fixture", "")
	t.Cleanup(func() { site.DeleteWebhook(t, key, own.ID) })
	other := site.AddWebhook(t, otherKey, "post.published", rc.URL()+"/fixture-other", "")
	t.Cleanup(func() { site.DeleteWebhook(t, otherKey, other.ID) })
	rows := site.Query(t, `select id from api_keys where type = 'content' and integration_id = (select integration_id from api_keys where id = ?)`, ghost.KeyID(key))
	if len(rows) != 1 {
		t.Fatalf("content key of the integration: %v", rows)
	}
	contentKeyID, _ := rows[0]["id"].(string)

	update := os.Getenv(EnvUpdateFixtures) != ""
	for i, c := range fx.Cases {
		authz, err := ghost.CaseAuthorization(c.Auth, key, contentKeyID, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		var body any
		if c.Body != nil {
			body = ghost.Expand(*c.Body, rc.URL(), own.ID, other.ID)
		}
		r, err := site.AdminRaw(context.Background(), authz, c.Method, ghost.Expand(c.Path, rc.URL(), own.ID, other.ID), body)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		got := ghost.CompactAnswer(r.Body)
		if update {
			fx.Cases[i].Status, fx.Cases[i].Answer = r.Status, got
			continue
		}
		if r.Status != c.Status || !bytes.Equal(got, ghost.CompactAnswer(c.Answer)) {
			t.Errorf("%s: Ghost answers HTTP %d %s\nthe fixture says HTTP %d %s", c.Name, r.Status, got, c.Status, ghost.CompactAnswer(c.Answer))
		}
	}
	if rc.Count() != 0 {
		t.Errorf("a fixture request made Ghost send %d webhook(s)", rc.Count())
	}
	// Every refused edit left both webhooks as they were.
	for _, w := range []ghost.Webhook{own, other} {
		rows := site.Query(t, `select event, target_url, name, secret, api_version, integration_id from webhooks where id = ?`, w.ID)
		if len(rows) != 1 || rows[0]["event"] != w.Event || rows[0]["target_url"] != w.TargetURL || rows[0]["name"] != nil ||
			rows[0]["secret"] != nil || rows[0]["api_version"] != w.APIVersion || rows[0]["integration_id"] != w.IntegrationID {
			t.Errorf("webhook %s changed by refused requests: %v (was %+v)", w.ID, rows, w)
		}
	}
	if update {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(fx); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile("testdata/admin_errors.json", buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote testdata/admin_errors.json from Ghost's answers (%d cases)", len(fx.Cases))
	}
}
