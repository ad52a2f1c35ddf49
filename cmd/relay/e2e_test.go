package main_test

// End-to-end tests of the real binary: several `relay run` processes on one database,
// killed with SIGKILL, stopped with SIGTERM, with PostgreSQL restarted underneath.
// Every test accounts for every event from the database and from what receivers saw.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/relay/pglocal"
	"github.com/relayhq/relay/testutil"
	"github.com/relayhq/relay/testutil/ghost"
)

var relayBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "relay-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	relayBin = filepath.Join(dir, "relay")
	build := exec.Command("go", "build", "-o", relayBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build relay: %v\n", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	testutil.Main(m, ghost.StopShared)
}

// syncBuffer collects a process's output for failure messages.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type relayProc struct {
	t    *testing.T
	id   string
	addr string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startRelay runs `relay run` against dbURL and waits until /readyz says ready.
func startRelay(t *testing.T, dbURL, id string, env ...string) *relayProc {
	t.Helper()
	p := &relayProc{t: t, id: id, addr: freeAddr(t), out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(relayBin, "run")
	p.cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dbURL,
		"RELAY_ADDR="+p.addr,
		"RELAY_INSTANCE_ID="+id,
		"RELAY_ALLOWED_TARGETS=127.0.0.1",
		"RELAY_LOG_FORMAT=json",
		"RELAY_LOG_LEVEL=warn",
		"RELAY_HTTP_TIMEOUT=2s",
		"RELAY_RETRY_SCHEDULE=200ms,200ms,500ms,1s,1s,1s,1s,1s,1s,1s",
		"RELAY_POLL_INTERVAL=250ms",
	)
	p.cmd.Env = append(p.cmd.Env, env...)
	for _, kv := range env {
		// A test that restarts a relay on the same address says which (the last value wins).
		if a, ok := strings.CutPrefix(kv, "RELAY_ADDR="); ok {
			p.addr = a
		}
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(15 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("relay %s output:\n%s", id, tail(p.out.String(), 4000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _ := readyz(p.addr); code == http.StatusOK {
			return p
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("relay %s exited at start (%v):\n%s", id, err, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay %s not ready after 30s:\n%s", id, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func readyz(addr string) (int, error) {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

func (p *relayProc) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	<-p.done
	p.done <- nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func addWebhook(t *testing.T, pool *pgxpool.Pool, event, url string) string {
	t.Helper()
	var id string
	if err := pool.QueryRow(context.Background(), `INSERT INTO relay.webhooks (event, target_url) VALUES ($1, $2) RETURNING id`, event, url).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// emitAll writes n post.published events in transactions of batch events from writers
// goroutines, retrying a transaction that fails (PostgreSQL may be restarting). Which
// events exist is read back from relay.events, not from here: a commit whose
// acknowledgement was lost may or may not have happened.
func emitAll(ctx context.Context, t *testing.T, pool *pgxpool.Pool, n, batch, writers int, pace time.Duration) {
	t.Helper()
	var wg sync.WaitGroup
	per := n / writers
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i += batch {
				events := make([]outbox.Event, 0, batch)
				for j := i; j < min(i+batch, per); j++ {
					events = append(events, outbox.Event{Name: "post.published",
						Data: fmt.Appendf(nil, `{"post":{"current":{"writer":%d,"n":%d},"previous":{}}}`, w, j)})
				}
				for attempt := 0; ; attempt++ {
					err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
						_, err := outbox.EmitBatch(ctx, tx, events)
						return err
					})
					if err == nil {
						break
					}
					if ctx.Err() != nil || attempt > 200 {
						t.Errorf("emit: %v", err)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
				time.Sleep(pace)
			}
		}()
	}
	wg.Wait()
}

func eventIDs(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT id::text FROM relay.events`)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// account compares what each receiver got with relay.events and returns the number of
// duplicate requests; it fails the test for anything missing or unknown.
func account(t *testing.T, ids []string, receivers []*testutil.Receiver) (duplicates int) {
	t.Helper()
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	for i, rc := range receivers {
		got := rc.ByWebhookID()
		missing, unknown := 0, 0
		for id := range want {
			switch n := got[id]; {
			case n == 0:
				missing++
			case n > 1:
				duplicates += n - 1
			}
		}
		for id := range got {
			if !want[id] {
				unknown++
			}
		}
		if missing > 0 || unknown > 0 {
			t.Errorf("receiver %d: %d of %d events missing, %d unknown", i, missing, len(want), unknown)
		}
	}
	return duplicates
}

func waitAll(t *testing.T, receivers []*testutil.Receiver, n int, timeout time.Duration) {
	t.Helper()
	for _, rc := range receivers {
		rc.WaitFor(t, n, timeout)
	}
}

func attemptsBy(t *testing.T, pool *pgxpool.Pool) map[string]int {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT relay_instance, count(*)::int FROM relay.delivery_attempts GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var id string
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	return out
}

func TestTwoRelaysDeliverEveryEventToEveryWebhookOnce(t *testing.T) {
	db := testutil.NewDB(t)
	var receivers []*testutil.Receiver
	for i := range 3 {
		rc := testutil.NewReceiver(t, nil)
		receivers = append(receivers, rc)
		addWebhook(t, db.Pool, "post.published", fmt.Sprintf("%s/hook%d", rc.URL(), i))
	}
	startRelay(t, db.URL, "a")
	startRelay(t, db.URL, "b")

	const events = 5000
	start := time.Now()
	emitAll(context.Background(), t, db.Pool, events, 50, 4, 0)
	waitAll(t, receivers, events, 120*time.Second)
	elapsed := time.Since(start)
	time.Sleep(time.Second) // anything doubled would arrive now

	ids := eventIDs(t, db.Pool)
	if len(ids) != events {
		t.Fatalf("relay.events has %d events, want %d", len(ids), events)
	}
	if dup := account(t, ids, receivers); dup != 0 {
		t.Errorf("%d duplicate requests with no crash", dup)
	}
	var succeeded, attempts int
	if err := db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM relay.deliveries WHERE status = 'succeeded'),
		(SELECT count(*) FROM relay.delivery_attempts)`).Scan(&succeeded, &attempts); err != nil {
		t.Fatal(err)
	}
	if succeeded != 3*events || attempts != 3*events {
		t.Errorf("succeeded deliveries %d, attempts %d, want %d each", succeeded, attempts, 3*events)
	}
	by := attemptsBy(t, db.Pool)
	t.Logf("%d deliveries in %s (%.0f/s) by two relays: attempts per relay %v", 3*events, elapsed.Round(time.Millisecond),
		float64(3*events)/elapsed.Seconds(), by)
	if by["a"] == 0 || by["b"] == 0 {
		t.Errorf("the relays did not share the work: %v", by)
	}
}

func leasedBy(t *testing.T, pool *pgxpool.Pool, owner string) int {
	t.Helper()
	var n int
	for attempt := 0; ; attempt++ {
		err := pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.deliveries WHERE lease_owner = $1 AND lease_token IS NOT NULL`, owner).Scan(&n)
		if err == nil {
			return n
		}
		if attempt > 50 {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSIGKILLedRelaysAndRestartedPostgresLoseNothing(t *testing.T) {
	cluster, db := testutil.NewMigratedCluster(t)
	url, pool := db.URL, db.Pool
	var receivers []*testutil.Receiver
	for i := range 3 {
		// A little latency per request, so that attempts are in flight when the kills land.
		rc := testutil.NewReceiver(t, func(w http.ResponseWriter, _ *http.Request, _ []byte) { time.Sleep(2 * time.Millisecond) })
		receivers = append(receivers, rc)
		addWebhook(t, pool, "post.published", fmt.Sprintf("%s/hook%d", rc.URL(), i))
	}
	a := startRelay(t, url, "a1")
	startRelay(t, url, "b1")

	const events = 5000
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emitted := make(chan struct{})
	go func() {
		defer close(emitted)
		emitAll(ctx, t, pool, events, 10, 2, 5*time.Millisecond)
	}()
	progress := func() int { return receivers[0].Count() }
	waitProgress := func(n int) {
		testutil.Eventually(t, 60*time.Second, func() bool { return progress() >= n }, "no progress to %d", n)
	}

	inFlightAtKills := 0
	waitProgress(events / 5)
	a.kill()
	inFlightAtKills += leasedBy(t, pool, "a1")
	a2 := startRelay(t, url, "a2")

	waitProgress(2 * events / 5)
	if err := cluster.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL restarted at %d received", progress())

	waitProgress(3 * events / 5)
	a2.kill() // the same relay's second death
	inFlightAtKills += leasedBy(t, pool, "a2")
	startRelay(t, url, "a3")

	<-emitted
	ids := eventIDs(t, pool)
	if len(ids) < events {
		t.Fatalf("relay.events has %d events, want at least %d", len(ids), events)
	}
	// Every receiver has everything once the killed relays' leases expire (HTTP timeout
	// + 15 s) and the survivors re-attempt what was in flight: what was POSTed but
	// not recorded arrives twice, with the same webhook-id.
	waitAll(t, receivers, len(ids), 120*time.Second)
	testutil.Eventually(t, 90*time.Second, func() bool {
		var pending int
		return pool.QueryRow(context.Background(), `SELECT count(*) FROM relay.deliveries WHERE status <> 'succeeded'`).Scan(&pending) == nil && pending == 0
	}, "deliveries still pending")
	time.Sleep(time.Second)
	dup := account(t, ids, receivers)
	t.Logf("%d events x 3 webhooks; %d duplicate requests; %d attempts were leased by the killed relays", len(ids), dup, inFlightAtKills)
	if dup > inFlightAtKills {
		t.Errorf("%d duplicates, more than the %d attempts in flight at the kills", dup, inFlightAtKills)
	}
	var pending, succeeded int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE status = 'pending'), count(*) FILTER (WHERE status = 'succeeded') FROM relay.deliveries`).Scan(&pending, &succeeded); err != nil {
		t.Fatal(err)
	}
	if succeeded != 3*len(ids) || pending != 0 {
		t.Errorf("deliveries: %d succeeded, %d pending; want %d and 0", succeeded, pending, 3*len(ids))
	}
}

func TestSIGTERMWithDeliveriesInFlightExitsZeroAndReleasesEverything(t *testing.T) {
	db := testutil.NewDB(t)
	rc := testutil.NewReceiver(t, func(w http.ResponseWriter, r *http.Request, _ []byte) {
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
	})
	addWebhook(t, db.Pool, "post.published", rc.URL())
	p := startRelay(t, db.URL, "term", "RELAY_HTTP_TIMEOUT=5s", "RELAY_WEBHOOK_CONCURRENCY=4")
	emitAll(context.Background(), t, db.Pool, 40, 40, 1, 0)
	rc.WaitFor(t, 4, 10*time.Second) // four attempts are in flight now

	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sawNotReady := false
	var exitErr error
	deadline := time.After(5*time.Second + 5*time.Second)
wait:
	for {
		select {
		case exitErr = <-p.done:
			p.done <- exitErr
			break wait
		case <-deadline:
			t.Fatalf("relay did not exit within the HTTP timeout + 5s after SIGTERM")
		case <-time.After(20 * time.Millisecond):
			if code, err := readyz(p.addr); err == nil && code == http.StatusServiceUnavailable {
				sawNotReady = true
			}
		}
	}
	t.Logf("exited %v after SIGTERM in %s", exitErr, time.Since(start).Round(time.Millisecond))
	if exitErr != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", exitErr, p.out.String())
	}
	if !sawNotReady {
		t.Errorf("/readyz never answered 503 during shutdown")
	}
	var leased, succeeded, attempts int
	if err := db.Pool.QueryRow(context.Background(), `SELECT
		(SELECT count(*) FROM relay.deliveries WHERE lease_token IS NOT NULL),
		(SELECT count(*) FROM relay.deliveries WHERE status = 'succeeded'),
		(SELECT count(*) FROM relay.delivery_attempts)`).Scan(&leased, &succeeded, &attempts); err != nil {
		t.Fatal(err)
	}
	if leased != 0 {
		t.Errorf("%d deliveries still leased after shutdown", leased)
	}
	// Every attempt that was in flight finished and was recorded.
	if got := rc.Count(); succeeded != got || attempts != got {
		t.Errorf("receiver got %d requests; %d succeeded, %d attempts recorded", got, succeeded, attempts)
	}
	if strings.Contains(p.out.String(), `"level":"error"`) {
		t.Errorf("errors logged during shutdown:\n%s", p.out.String())
	}
	// The rest is still there for the next relay.
	startRelay(t, db.URL, "next")
	rc.WaitFor(t, 40, 30*time.Second)
}

// TestRunWithoutDatabaseURLUsesAPrivatePostgres is the README's walkthrough: `relay run`
// with no DATABASE_URL starts PostgreSQL in RELAY_DATA_DIR (as root it runs the server as
// an unprivileged user), other commands attach to it, and a restart reuses it.
func TestRunWithoutDatabaseURLUsesAPrivatePostgres(t *testing.T) {
	dir, err := os.MkdirTemp("", "relay-private-")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.Chmod(dir, 0o755)
	dataDir := filepath.Join(dir, ".relay")
	t.Cleanup(func() {
		// Stop the server `relay run` left running for its next start.
		if srv, err := pglocal.Start(context.Background(), pglocal.Options{DataDir: dataDir}); err == nil {
			_ = srv.Stop(context.Background())
		}
		_ = os.RemoveAll(dir)
	})
	rc := testutil.NewReceiver(t, nil)
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(relayBin, args...)
		cmd.Env = append(os.Environ(), "DATABASE_URL=", "RELAY_DATA_DIR="+dataDir, "RELAY_LOG_LEVEL=warn")
		out, err := cmd.Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("relay %v: %v\n%s%s", args, err, out, stderr)
		}
		return string(out)
	}
	run := func(id string) *relayProc {
		return startRelay(t, "", id, "RELAY_DATA_DIR="+dataDir)
	}
	p := run("private-1")
	added := cli("webhooks", "add", "post.*", rc.URL()+"/hook", "--secret", "generate")
	_, secret, ok := strings.Cut(added, "secret (shown once): ")
	secret = strings.TrimSpace(secret)
	if !ok || !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("webhooks add --secret generate printed no secret:\n%s", added)
	}
	if out := cli("webhooks", "list", "--json"); !strings.Contains(out, rc.URL()) || strings.Contains(out, secret) {
		t.Fatalf("webhooks list must show the webhook with its secret masked:\n%s", out)
	}
	id := strings.TrimSpace(cli("emit", "post.published", "--data", `{"post":{"current":{"id":"1"},"previous":{}}}`))
	got := rc.WaitFor(t, 1, 15*time.Second)
	if got[0].Header.Get("webhook-id") != id {
		t.Fatalf("delivered webhook-id %q, want %q", got[0].Header.Get("webhook-id"), id)
	}
	// The private PostgreSQL gives out the relay role's URL in a file of ours alone; that
	// role is no superuser (the README's `psql "$(cat .relay/database.url)"`).
	urlFile := filepath.Join(dataDir, "database.url")
	if fi, err := os.Stat(urlFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v; want mode 0600", urlFile, err, fi.Mode())
	}
	dbURL, err := os.ReadFile(urlFile)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(context.Background(), strings.TrimSpace(string(dbURL)))
	if err != nil {
		t.Fatalf("connect with %s: %v", urlFile, err)
	}
	var user string
	var super bool
	if err := conn.QueryRow(context.Background(), `SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&user, &super); err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(context.Background())
	if user != "relay" || super {
		t.Errorf("database.url connects as %s (superuser %v), want the non-superuser relay", user, super)
	}
	// The CLI attached to the running server and left it running.
	if code, err := readyz(p.addr); err != nil || code != http.StatusOK {
		t.Fatalf("relay not ready after CLI commands: %d %v", code, err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-p.done; err != nil {
		t.Fatalf("relay exit: %v\n%s", err, p.out.String())
	}
	p.done <- nil
	// A second start on the same data directory finds its database and webhook.
	run("private-2")
	cli("emit", "post.edited", "--data", `{"post":{"current":{"id":"1"},"previous":{"title":"x"}}}`)
	rc.WaitFor(t, 2, 15*time.Second)
}
