package main_test

// Tests of the relay process against hostile peers (issue 11): a receiver that answers
// with endless headers, clients that hold idle connections.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayhq/relay/testutil"
)

// hugeHeaderReceiver accepts connections and answers every request with a status line
// followed by header lines that never end, as fast as the relay reads them.
type hugeHeaderReceiver struct {
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	accepted int
}

func newHugeHeaderReceiver(t *testing.T) *hugeHeaderReceiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hugeHeaderReceiver{ln: ln, conns: map[net.Conn]struct{}{}}
	h.wg.Add(1)
	go h.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		h.mu.Lock()
		for c := range h.conns {
			_ = c.Close()
		}
		h.mu.Unlock()
		h.wg.Wait()
	})
	return h
}

func (h *hugeHeaderReceiver) URL() string { return "http://" + h.ln.Addr().String() }

func (h *hugeHeaderReceiver) serve() {
	defer h.wg.Done()
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		h.conns[c] = struct{}{}
		h.accepted++
		h.mu.Unlock()
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			defer func() {
				h.mu.Lock()
				delete(h.conns, c)
				h.mu.Unlock()
				_ = c.Close()
			}()
			// Wait for the request's headers, then never stop answering.
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if line == "\r\n" {
					break
				}
			}
			w := bufio.NewWriterSize(c, 64<<10)
			_, _ = w.WriteString("HTTP/1.1 200 OK\r\n")
			pad := strings.Repeat("a", 4000)
			for i := 0; ; i++ {
				if _, err := fmt.Fprintf(w, "X-Pad-%d: %s\r\n", i, pad); err != nil {
					return
				}
			}
		}()
	}
}

// procStatusKiB reads a field such as VmHWM from /proc/PID/status, in KiB.
func procStatusKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				t.Fatalf("/proc/%d/status %s: %v", pid, field, err)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// TestEndlessResponseHeadersDoNotGrowTheRelay: eight webhooks at a receiver whose
// response headers never end. Each attempt fails with a recorded error naming the header
// limit, and the relay's peak RSS stays bounded (Go's default limit of 10 MiB per
// response let 64 attempts in flight take it to hundreds of MiB).
func TestEndlessResponseHeadersDoNotGrowTheRelay(t *testing.T) {
	db := testutil.NewDB(t)
	hostile := newHugeHeaderReceiver(t)
	for i := range 8 {
		addWebhook(t, db.Pool, "post.published", fmt.Sprintf("%s/hook%d", hostile.URL(), i))
	}
	p := startRelay(t, db.URL, "huge-headers", "RELAY_RETRY_SCHEDULE=100ms,100ms,100ms,100ms")
	base := procStatusKiB(t, p.cmd.Process.Pid, "VmHWM")
	emitAll(context.Background(), t, db.Pool, 64, 64, 1, 0)

	// Every delivery used up its schedule: 64 events x 8 webhooks x 5 attempts.
	testutil.Eventually(t, 120*time.Second, func() bool {
		var failed int
		return db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.deliveries WHERE status = 'failed'`).Scan(&failed) == nil && failed == 64*8
	}, "deliveries did not all fail")
	peak := procStatusKiB(t, p.cmd.Process.Pid, "VmHWM")
	// Each attempt ends at the header limit, or at the attempt timeout when a loaded
	// machine serves the 32 KiB of headers slower than that; nothing else.
	var attempts, headerLimit, timedOut int
	if err := db.Pool.QueryRow(context.Background(), `SELECT count(*),
		count(*) FILTER (WHERE error LIKE '%response headers exceeded%'),
		count(*) FILTER (WHERE error LIKE 'timeout after %')
		FROM relay.delivery_attempts WHERE status_code IS NULL`).Scan(&attempts, &headerLimit, &timedOut); err != nil {
		t.Fatal(err)
	}
	t.Logf("relay VmHWM %d KiB at start, %d KiB after %d attempts against endless headers (%d at the header limit, %d timed out)",
		base, peak, attempts, headerLimit, timedOut)
	if attempts != 64*8*5 {
		t.Errorf("%d failed attempts without a status code, want %d", attempts, 64*8*5)
	}
	if headerLimit == 0 || headerLimit+timedOut != attempts {
		var other string
		_ = db.Pool.QueryRow(context.Background(), `SELECT coalesce(min(error), '') FROM relay.delivery_attempts
			WHERE status_code IS NULL AND error NOT LIKE '%response headers exceeded%' AND error NOT LIKE 'timeout after %'`).Scan(&other)
		t.Errorf("%d of %d attempts say the response headers were too large, %d timed out; another error: %q", headerLimit, attempts, timedOut, other)
	}
	if peak > 100<<10 {
		t.Errorf("relay peak RSS %d MiB, want at most 100 MiB", peak>>10)
	}
}

// TestSymlinkedDataDirStopsTheRelay: RELAY_DATA_DIR planted as a symlink (by another user
// in a shared directory, say) stops every command with one line saying why.
func TestSymlinkedDataDirStopsTheRelay(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "elsewhere")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, ".relay")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"migrate"}, {"webhooks", "list"}} {
		code, _, stderr := runRelay(t, []string{"RELAY_DATA_DIR=" + link, "RELAY_LOG_LEVEL=error"}, args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != 1 || len(lines) != 1 || !strings.Contains(stderr, link+" is a symbolic link") {
			t.Errorf("relay %v with a symlinked RELAY_DATA_DIR: exit %d, stderr:\n%s\nwant exit 1 and one line naming the symlink", args, code, stderr)
		}
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("the symlink's target was changed: %v %v", fi.Mode(), err)
	}
}

// openFDs counts the file descriptors process pid holds.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	entries, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestIdleConnectionsAreCappedAndClosed: 300 clients each send one keep-alive request
// to the relay's port and then sit idle. The relay holds at most RELAY_MAX_CONNECTIONS of
// them at a time (the others wait, unaccepted, in the kernel's backlog), closes idle ones
// after RELAY_IDLE_TIMEOUT, and so serves the waiting ones in turn; its descriptors stay
// bounded throughout (with no cap and a 2-minute idle timeout, 1,500 idle connections
// held 1,534 descriptors).
func TestIdleConnectionsAreCappedAndClosed(t *testing.T) {
	db := testutil.NewDB(t)
	const maxConns, clients = 50, 300
	p := startRelay(t, db.URL, "idle", fmt.Sprintf("RELAY_MAX_CONNECTIONS=%d", maxConns), "RELAY_IDLE_TIMEOUT=1s")
	pid := p.cmd.Process.Pid
	base := openFDs(t, pid)

	var answered, closedByServer atomic.Int32
	var wg sync.WaitGroup
	conns := make([]net.Conn, 0, clients)
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
		wg.Wait()
	}()
	for range clients {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: relay\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			answered.Add(1)
			// Now idle: the next thing the server does is close it.
			if _, err := br.ReadByte(); err == io.EOF {
				closedByServer.Add(1)
			}
		}()
	}

	peak := 0
	sampled := func(cond func() bool) func() bool {
		return func() bool {
			peak = max(peak, openFDs(t, pid))
			return cond()
		}
	}
	testutil.Eventually(t, 10*time.Second, sampled(func() bool { return answered.Load() >= maxConns }), "the first connections were not served")
	// Until the first idle timeout, only the cap is served; the rest wait.
	firstWave := answered.Load()
	testutil.Eventually(t, 60*time.Second, sampled(func() bool { return answered.Load() == clients }),
		"waiting connections were not served after idle ones were closed")
	t.Logf("descriptors: %d before, at most %d with %d clients; first wave answered %d", base, peak, clients, firstWave)
	if firstWave > maxConns+5 {
		t.Errorf("%d connections served at once, want at most the cap of %d", firstWave, maxConns)
	}
	if peak > base+maxConns+10 {
		t.Errorf("the relay held %d descriptors (%d before), want at most %d more than before", peak, base, maxConns+10)
	}
	testutil.Eventually(t, 10*time.Second, sampled(func() bool { return closedByServer.Load() == clients }),
		"idle connections were not closed by the server")
}

// TestListingsMaskCredentialsInTargetURLs: a target URL's password and token-like query
// values show masked in `webhooks list`, `status`, `deliveries list`, `events show` and
// the audit API; the Ghost-compatible Admin API returns the URL as set, as Ghost does.
func TestListingsMaskCredentialsInTargetURLs(t *testing.T) {
	db := testutil.NewDB(t)
	failing := testutil.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) { w.WriteHeader(http.StatusBadGateway) })
	secrets := []string{"hunter2SECRET", "TOKENSECRET", "APIKEYSECRET"}
	target := strings.Replace(failing.URL(), "http://", "http://operator:"+secrets[0]+"@", 1) +
		"/hook?token=" + secrets[1] + "&page=2&api_key=" + secrets[2]
	hook := addWebhook(t, db.Pool, "post.published", target)
	p := startRelay(t, db.URL, "mask")
	env := []string{"DATABASE_URL=" + db.URL, "RELAY_LOG_LEVEL=warn"}
	code, eventID, stderr := runRelay(t, env, "emit", "post.published", "--data", `{"post":{"current":{},"previous":{}}}`)
	if code != 0 {
		t.Fatalf("emit: %d %s", code, stderr)
	}
	eventID = strings.TrimSpace(eventID)
	failing.WaitFor(t, 1, 15*time.Second)
	testutil.Eventually(t, 15*time.Second, func() bool {
		var n int
		return db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.delivery_attempts`).Scan(&n) == nil && n > 0
	}, "no attempt recorded")

	check := func(surface, out string) {
		t.Helper()
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s shows %s:\n%s", surface, s, out)
			}
		}
		if surface == "relay deliveries list" {
			return // its table has no URL column
		}
		if !strings.Contains(out, "operator:xxxxx@") || !strings.Contains(out, "token=xxxxx") || !strings.Contains(out, "page=2") {
			t.Errorf("%s does not show the masked URL:\n%s", surface, out)
		}
	}
	for _, args := range [][]string{
		{"webhooks", "list"}, {"webhooks", "list", "--json"},
		{"status"}, {"status", "--json"},
		{"deliveries", "list"}, {"deliveries", "list", "--json"},
		{"events", "show", eventID}, {"events", "show", eventID, "--json"},
	} {
		code, out, stderr := runRelay(t, env, args...)
		if code != 0 {
			t.Fatalf("relay %v: exit %d %s", args, code, stderr)
		}
		check("relay "+strings.Join(args, " "), out)
	}

	code, key, stderr := runRelay(t, env, "keys", "create", "--name", "mask")
	if code != 0 {
		t.Fatalf("keys create: %d %s", code, stderr)
	}
	get := func(path string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, "http://"+p.addr+path, nil)
		req.Header.Set("Authorization", "Ghost "+ghostToken(t, key))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
		return string(b)
	}
	var deliveryID int64
	if err := db.Pool.QueryRow(context.Background(), `SELECT id FROM relay.deliveries WHERE webhook_id = $1`, hook).Scan(&deliveryID); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/relay/v1/deliveries", fmt.Sprintf("/relay/v1/deliveries/%d", deliveryID), "/relay/v1/events/" + eventID} {
		check("GET "+path, get(path))
	}
	// Ghost's Admin API gives the caller back what it set: the integration's own webhook,
	// credentials and all.
	own := strings.Replace(target, "/hook?", "/own?", 1)
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.addr+"/ghost/api/admin/webhooks/",
		strings.NewReader(`{"webhooks":[{"event":"post.published","target_url":`+strconv.Quote(own)+`}]}`))
	req.Header.Set("Authorization", "Ghost "+ghostToken(t, key))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("Admin API add: %d", resp.StatusCode)
	}
	if out := get("/ghost/api/admin/webhooks/"); !strings.Contains(out, secrets[0]) || !strings.Contains(out, secrets[1]) {
		t.Errorf("the Admin API does not return the target URL as set:\n%s", out)
	}
}
