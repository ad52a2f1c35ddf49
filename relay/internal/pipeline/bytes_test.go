package pipeline_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/testutil"
)

// expressReceiver runs testdata/express-receiver (npm ci on first use) and returns its
// URL and the verdicts it printed, one per POST, keyed by webhook-id.
func expressReceiver(t *testing.T, secret string) (url string, verdicts func() map[string]bool) {
	t.Helper()
	dir, err := filepath.Abs("testdata/express-receiver")
	if err != nil {
		t.Fatal(err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not installed: this test runs an Express receiver (apt-get install nodejs npm)")
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "express")); err != nil {
		install := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		install.Dir = dir
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s (installs express): %v\n%s", dir, err, out)
		}
	}
	cmd := exec.Command(node, "receiver.js", secret)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	port := make(chan int, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var line struct {
				Port      int    `json:"port"`
				WebhookID string `json:"webhookId"`
				Verified  bool   `json:"verified"`
			}
			if json.Unmarshal(sc.Bytes(), &line) != nil {
				continue
			}
			if line.Port != 0 {
				port <- line.Port
				continue
			}
			mu.Lock()
			seen[line.WebhookID] = line.Verified
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		<-done
	})
	select {
	case p := <-port:
		url = "http://127.0.0.1:" + strconv.Itoa(p) + "/hooks/ghost"
	case <-time.After(30 * time.Second):
		t.Fatal("the Express receiver did not start")
	}
	return url, func() map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		cp := make(map[string]bool, len(seen))
		for k, v := range seen {
			cp[k] = v
		}
		return cp
	}
}

// A receiver that verifies X-Ghost-Signature over JSON.stringify(req.body), the usual
// Express recipe, accepts every delivery: the relay forwards the bytes the CMS wrote
// (compact JSON.stringify text, as Ghost and a Node CMS write it) without reordering
// keys or adding spaces, through package outbox and through SQL alike.
func TestExpressReceiverVerifyingJSONStringifyAcceptsEveryDelivery(t *testing.T) {
	t.Parallel()
	const secret = "express-receiver-secret"
	url, verdicts := expressReceiver(t, secret)
	db := testutil.NewDB(t)
	addWebhook(t, db, "post.published", url, secret)
	startRelay(t, db, testConfig(t))

	bodies := []string{
		`{"b":1,"a":2}`,
		`{"event":"post.published","post":{"current":{"title":"Café ✓","id":"6650","tags":[],"n":150},"previous":{"status":"draft","published_at":null}}}`,
	}
	var ids []string
	for _, b := range bodies {
		err := pgx.BeginFunc(context.Background(), db.Pool, func(tx pgx.Tx) error {
			id, err := outbox.Emit(context.Background(), tx, "post.published", json.RawMessage(b))
			ids = append(ids, id)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		var id string
		if err := db.Pool.QueryRow(context.Background(), `SELECT relay.emit('post.published', $1)::text`, b).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	testutil.Eventually(t, 15*time.Second, func() bool { return len(verdicts()) == len(ids) }, "the Express receiver did not get all %d deliveries", len(ids))
	got := verdicts()
	for _, id := range ids {
		if !got[id] {
			t.Errorf("delivery %s failed JSON.stringify verification at the Express receiver", id)
		}
	}
	// The receiver prints its verdict before it answers, and the relay records the
	// answer after that: wait for the record.
	testutil.Eventually(t, 10*time.Second, func() bool {
		return queryInt(t, db, `SELECT count(*) FROM relay.deliveries WHERE status = 'succeeded'`) == len(ids)
	}, "not all %d deliveries recorded as succeeded", len(ids))
}
