package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestGhostsOwnAdminAPIClientWorksUnchanged drives the Admin API with Ghost's official
// JavaScript client, @tryghost/admin-api (pinned in testdata/ghost-admin-client), the
// way a Ghost integration would: add, edit, delete, the errors it turns into
// exceptions, and an old client pinned to v3. It needs node and npm (.ci/run installs
// them where missing) and runs `npm ci` in that folder when the client is not there yet.
func TestGhostsOwnAdminAPIClientWorksUnchanged(t *testing.T) {
	t.Parallel()
	a := newAdminAPI(t, nil)
	const target = "https://hooks.example.com/ghost"
	steps := runGhostClient(t, "client.js", a.srv.URL, a.key, target)
	wh := func(step string) map[string]any {
		m, _ := steps[step]["webhook"].(map[string]any)
		if m == nil {
			t.Fatalf("step %s: no webhook in %v", step, steps[step])
		}
		return m
	}

	added := wh("add")
	if added["event"] != "post.published" || added["target_url"] != target || added["secret"] != "c1ient-secret" || added["name"] != "from admin-api" {
		t.Errorf("add returned %v", added)
	}
	edited := wh("edit")
	if edited["id"] != added["id"] || edited["target_url"] != target+"/edited" || edited["name"] != "renamed" {
		t.Errorf("edit returned %v", edited)
	}
	// The client turns Ghost's error object into the exception: name is the type,
	// message and context are Ghost's.
	for step, want := range map[string][3]any{
		"duplicate":     {"ValidationError", "Validation error, cannot save webhook.", "Target URL has already been used for this event."},
		"unknown-event": {"ValidationError", "Validation error, cannot save webhook.", "Unknown webhook event 'post.exploded'."},
		"bad-url":       {"ValidationError", "Validation error, cannot save webhook.", "Validation failed for target_url."},
		"delete-again":  {"NotFoundError", "Resource not found error, cannot delete webhook.", "Webhook not found."},
		"wrong-secret":  {"UnauthorizedError", "Invalid token: invalid signature", nil},
	} {
		s := steps[step]
		if s == nil || s["ok"] != false || s["name"] != want[0] || s["message"] != want[1] || s["context"] != want[2] {
			t.Errorf("step %s: %v, want %s %q, context %v", step, s, want[0], want[1], want[2])
		}
	}
	if s := steps["delete"]; s == nil || s["ok"] != true {
		t.Errorf("delete: %v", s)
	}
	if s := steps["audit-api"]; s == nil || s["status"] != float64(200) {
		t.Errorf("audit API with the client's token: %v", s)
	}
	if old := wh("add-v3"); old["event"] != "tag.added" {
		t.Errorf("v3 client add returned %v", old)
	}
	var n int
	if err := a.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.webhooks`).Scan(&n); err != nil || n != 1 {
		t.Errorf("%d webhooks left, want the v3 one (%v)", n, err)
	}
}

// ghostClientInstall serialises the check-and-install of the client: two tests running
// in parallel would otherwise both run `npm ci` in the same folder at once.
var ghostClientInstall sync.Mutex

// runGhostClient runs a script of testdata/ghost-admin-client with node and returns its
// steps (one JSON line each, by "step"). It needs node and npm (.ci/run installs them
// where missing) and runs `npm ci` there when the client is not installed yet.
func runGhostClient(t *testing.T, script string, args ...string) map[string]map[string]any {
	t.Helper()
	dir, err := filepath.Abs("testdata/ghost-admin-client")
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: this test runs Ghost's own JavaScript client (apt-get install nodejs npm)")
	}
	ghostClientInstall.Lock()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@tryghost", "admin-api")); err != nil {
		install := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		install.Dir = dir
		if out, err := install.CombinedOutput(); err != nil {
			ghostClientInstall.Unlock()
			t.Fatalf("npm ci in %s (installs @tryghost/admin-api): %v\n%s", dir, err, out)
		}
	}
	ghostClientInstall.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", script, err, out, stderr.String())
	}
	steps := map[string]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s printed %q: %v", script, sc.Text(), err)
		}
		steps[m["step"].(string)] = m
	}
	return steps
}
