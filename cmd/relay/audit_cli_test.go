package main_test

// The operator commands of issue 4, run as the real binary: keys, events, deliveries
// and redeliver. Exit status 0 with the answer on stdout, or non-zero with one line on
// stderr (README: "Command line").

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/relayhq/relay/testutil"
)

// cli runs the relay binary against db and returns stdout, stderr and the exit code.
func cli(t *testing.T, db *testutil.DB, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(relayBin, append(args, "--database-url", db.URL, "--log-format", "json")...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run relay %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

func mustCLI(t *testing.T, db *testutil.DB, args ...string) string {
	t.Helper()
	out, errOut, code := cli(t, db, args...)
	if code != 0 {
		t.Fatalf("relay %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

func TestKeysCreateShowsTheKeyOnceListNeverAndRevokeEndsItsIntegration(t *testing.T) {
	db := testutil.NewDB(t)
	out := mustCLI(t, db, "keys", "create", "--name", "zapier")
	key := strings.TrimSpace(out)
	if !regexp.MustCompile(`^[0-9a-f]{24}:[0-9a-f]{64}$`).MatchString(key) {
		t.Fatalf("keys create printed %q, want id:secret (24 hex : 64 hex)", out)
	}
	id, secret, _ := strings.Cut(key, ":")

	kek := strings.Repeat("5a", 32)
	sealedOut := mustCLI(t, db, "keys", "create", "--name", "sealed", "--key-encryption-key", kek)
	sealedID := strings.SplitN(strings.TrimSpace(sealedOut), ":", 2)[0]

	list := mustCLI(t, db, "keys", "list", "--json")
	table := mustCLI(t, db, "keys", "list")
	for _, s := range []string{list, table} {
		if strings.Contains(s, secret) {
			t.Fatalf("keys list shows a secret: %s", s)
		}
	}
	var keys []struct {
		ID          string `json:"id"`
		Name        string `json:"name"`
		Integration struct {
			ID, Name, Slug, Type string
		} `json:"integration"`
		Encrypted bool    `json:"encrypted"`
		RevokedAt *string `json:"revoked_at"`
	}
	if err := json.Unmarshal([]byte(list), &keys); err != nil || len(keys) != 2 {
		t.Fatalf("keys list --json: %s (%v)", list, err)
	}
	if keys[0].ID != id || keys[0].Name != "zapier" || keys[0].Encrypted || keys[1].ID != sealedID || !keys[1].Encrypted {
		t.Errorf("keys list: %+v", keys)
	}
	if in := keys[0].Integration; in.Name != "zapier" || in.Slug != "zapier" || in.Type != "custom" || in.ID == keys[1].Integration.ID ||
		!strings.Contains(table, in.ID) || !strings.Contains(table, "INTEGRATION") {
		t.Errorf("keys list shows integration %+v; table:\n%s", in, table)
	}
	// A webhook of the key's integration (as the Admin API adds it) and one of the
	// operator's (the CLI's).
	theirs := addWebhook(t, db.Pool, "post.published", "https://example.com/zapier")
	if _, err := db.Pool.Exec(context.Background(), `UPDATE relay.webhooks SET integration_id = $1 WHERE id = $2`, keys[0].Integration.ID, theirs); err != nil {
		t.Fatal(err)
	}
	operators := addWebhook(t, db.Pool, "post.published", "https://example.com/operator")
	var plain *string
	if err := db.Pool.QueryRow(context.Background(), `SELECT secret_plain FROM relay.api_keys WHERE id = $1`, sealedID).Scan(&plain); err != nil || plain != nil {
		t.Errorf("key created with a KEK is stored in plaintext (%v)", err)
	}

	if out := mustCLI(t, db, "keys", "revoke", id); !strings.Contains(out, "removed 1 webhook") {
		t.Errorf("keys revoke printed %q", out)
	}
	if err := json.Unmarshal([]byte(mustCLI(t, db, "keys", "list", "--json")), &keys); err != nil || keys[0].RevokedAt == nil {
		t.Errorf("revoked key not marked: %+v %v", keys, err)
	}
	var left []string
	rows, _ := db.Pool.Query(context.Background(), `SELECT id FROM relay.webhooks`)
	for rows.Next() {
		var w string
		_ = rows.Scan(&w)
		left = append(left, w)
	}
	if len(left) != 1 || left[0] != operators {
		t.Errorf("webhooks after revoke: %v, want only the operator's %s", left, operators)
	}
	if _, errOut, code := cli(t, db, "keys", "revoke", "0123456789abcdef01234567"); code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
		t.Errorf("revoking an unknown key: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := cli(t, db, "keys", "create", "--key-encryption-key", "hunter2"); code == 0 || !strings.Contains(errOut, "RELAY_KEY_ENCRYPTION_KEY") {
		t.Errorf("weak KEK: exit %d, stderr %q", code, errOut)
	}
}

func TestEventsDeliveriesAndRedeliverCommands(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	wh := addWebhook(t, db.Pool, "post.*", "https://example.com/hook")
	ids := make([]string, 3)
	for i := range ids {
		if err := db.Pool.QueryRow(ctx, `SELECT relay.emit('post.published', jsonb_build_object('n', $1::int))::text`, i).Scan(&ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	var failedID int64
	for i, id := range ids {
		status := "succeeded"
		if i == 1 {
			status = "failed"
		}
		var did int64
		if err := db.Pool.QueryRow(ctx, `INSERT INTO relay.deliveries (event_id, webhook_id, status, attempts, last_status_code, last_error)
			VALUES ($1, $2, $3, 1, 500, 'HTTP 500') RETURNING id`, id, wh, status).Scan(&did); err != nil {
			t.Fatal(err)
		}
		if _, err := db.Pool.Exec(ctx, `INSERT INTO relay.delivery_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error)
			VALUES ($1, 1, now(), 12, 500, 'HTTP 500')`, did); err != nil {
			t.Fatal(err)
		}
		if status == "failed" {
			failedID = did
		}
	}

	var events struct {
		Events []struct {
			ID             string         `json:"id"`
			DeliveryCounts map[string]int `json:"delivery_counts"`
		} `json:"events"`
		NextCursor string `json:"next_cursor"`
	}
	out := mustCLI(t, db, "events", "list", "--json", "--limit", "2", "--event", "post.*", "--since", "1h")
	if err := json.Unmarshal([]byte(out), &events); err != nil || len(events.Events) != 2 || events.Events[0].ID != ids[2] || events.NextCursor == "" {
		t.Fatalf("events list: %s (%v)", out, err)
	}
	out = mustCLI(t, db, "events", "list", "--json", "--cursor", events.NextCursor)
	if err := json.Unmarshal([]byte(out), &events); err != nil || len(events.Events) != 1 || events.Events[0].ID != ids[0] {
		t.Fatalf("events list page 2: %s (%v)", out, err)
	}
	out = mustCLI(t, db, "events", "list", "--status", "failed")
	if !strings.Contains(out, ids[1]) || strings.Contains(out, ids[0]) || !strings.Contains(out, "1 failed") {
		t.Errorf("events list --status failed:\n%s", out)
	}
	out = mustCLI(t, db, "events", "show", ids[1])
	for _, want := range []string{ids[1], "post.published", `"n": 1`, "status failed after 1 attempt", "#1", "HTTP 500"} {
		if !strings.Contains(out, want) {
			t.Errorf("events show lacks %q:\n%s", want, out)
		}
	}
	if _, errOut, code := cli(t, db, "events", "show", "9b2c1f9e-0000-4000-8000-000000000000"); code == 0 || !strings.Contains(errOut, "no event") {
		t.Errorf("events show unknown: exit %d %q", code, errOut)
	}

	var ds struct {
		Deliveries []struct {
			ID     int64  `json:"id"`
			Status string `json:"status"`
		} `json:"deliveries"`
	}
	out = mustCLI(t, db, "deliveries", "list", "--json", "--status", "failed", "--webhook", wh)
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds.Deliveries) != 1 || ds.Deliveries[0].ID != failedID {
		t.Fatalf("deliveries list: %s (%v)", out, err)
	}
	if _, errOut, code := cli(t, db, "deliveries", "list", "--since", "yesterday"); code == 0 || !strings.Contains(errOut, "--since") {
		t.Errorf("bad --since: exit %d %q", code, errOut)
	}

	out = mustCLI(t, db, "redeliver", strconv.FormatInt(failedID, 10))
	if !strings.Contains(out, "redelivered 1") {
		t.Errorf("redeliver: %s", out)
	}
	var status string
	var attempts int
	if err := db.Pool.QueryRow(ctx, `SELECT status, attempts FROM relay.deliveries WHERE id = $1`, failedID).Scan(&status, &attempts); err != nil || status != "pending" || attempts != 1 {
		t.Errorf("after redeliver: %s/%d (%v), want pending with its attempt kept", status, attempts, err)
	}
	out = mustCLI(t, db, "redeliver", "--event", ids[0], "--json")
	if !strings.Contains(out, `"redelivered": [`) {
		t.Errorf("redeliver --event: %s", out)
	}
	out = mustCLI(t, db, "redeliver", "--webhook", wh, "--since", "24h", "--status", "succeeded")
	if !strings.Contains(out, "redelivered 1") { // ids[2]; ids[0] is pending by now
		t.Errorf("redeliver --webhook: %s", out)
	}
	if out := mustCLI(t, db, "events", "register", "order.shipped"); !strings.Contains(out, "registered") {
		t.Errorf("events register: %s", out)
	}
	if err := db.Pool.QueryRow(ctx, `SELECT relay.emit('order.shipped', '{}')::text`).Scan(new(string)); err != nil {
		t.Errorf("registered event refused by relay.emit: %v", err)
	}
	for _, args := range [][]string{
		{"events", "register", "Order.Shipped"},
		{"redeliver"}, {"redeliver", "1", "--event", ids[0]}, {"redeliver", "--webhook", wh}, {"redeliver", "999999"},
	} {
		if _, errOut, code := cli(t, db, args...); code == 0 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("relay %v: exit %d, stderr %q; want non-zero and one line", args, code, errOut)
		}
	}
}
