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
	"slices"
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
	return startRelayBinary(t, relayBin, dbURL, id, env...)
}

// startRelayBinary is startRelay with the binary at bin.
func startRelayBinary(t *testing.T, bin, dbURL, id string, env ...string) *relayProc {
	t.Helper()
	p := &relayProc{t: t, id: id, addr: freeAddr(t), out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, "run")
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

// TestRunWithoutDatabaseURLUsesAPrivatePostgres is the README's walkthrough, its commands
// as written: the binary built with the README's `go build` line in the repository's root
// (so a walkthrough that builds where `./relay` is a folder fails here), `relay run` with
// no DATABASE_URL starting PostgreSQL in ./.relay (as root it runs the server as an
// unprivileged user), the one-shot commands attaching to it and saying nothing on stderr
// when they succeed, the SQL of step 4 emitting one event and rolling one back, the audit
// query of step 5, and a restart reusing the database.
func TestRunWithoutDatabaseURLUsesAPrivatePostgres(t *testing.T) {
	w := readWalkthrough(t)
	bin := buildAsWalkthrough(t, w)

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
	// A one-shot command as the walkthrough runs it: from the directory holding .relay,
	// with none of the developer's relay variables, the receiver's address for the
	// README's 127.0.0.1:9000. On success, stderr is empty.
	oneShot := func(args []string, env ...string) string {
		t.Helper()
		args = slices.Clone(args)
		for i, a := range args {
			args[i] = strings.ReplaceAll(a, "http://127.0.0.1:9000", rc.URL())
		}
		cmd := exec.Command(bin, args...)
		cmd.Dir = dir
		cmd.Env = append(withoutRelaySettings(os.Environ()), env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("relay %v: %v\n%s%s", args, err, stdout.String(), stderr.String())
		}
		if len(env) == 0 && stderr.Len() > 0 {
			t.Errorf("relay %v succeeded but wrote to stderr:\n%s", args, stderr.String())
		}
		return stdout.String()
	}
	run := func(id string) *relayProc {
		return startRelayBinary(t, bin, "", id, "RELAY_DATA_DIR="+dataDir)
	}
	if !slices.Equal(w.run, []string{"run"}) {
		t.Fatalf("the walkthrough starts the relay with %q; this test runs `relay run`", w.run)
	}

	// 1. The relay, on a private PostgreSQL.
	p := run("private-1")

	// 3. Subscribe, with a generated secret shown once; the listings never show it.
	added := oneShot(w.add)
	_, secret, ok := strings.Cut(added, "secret (shown once): ")
	secret = strings.TrimSpace(secret)
	if !ok || !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("webhooks add --secret generate printed no secret:\n%s", added)
	}
	for _, args := range [][]string{w.list, append(slices.Clone(w.list), "--json")} {
		if out := oneShot(args); !strings.Contains(out, rc.URL()) || strings.Contains(out, secret) {
			t.Fatalf("relay %v must show the webhook with its secret masked:\n%s", args, out)
		}
	}
	// Asked for, the same command says how it reached the database.
	if out := runWithStderr(t, bin, dir, w.list, "RELAY_LOG_LEVEL=debug"); !strings.Contains(out, "private PostgreSQL is running") {
		t.Errorf("relay %v with RELAY_LOG_LEVEL=debug does not say which PostgreSQL it used:\n%s", w.list, out)
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
	defer conn.Close(context.Background())
	var user string
	var super bool
	if err := conn.QueryRow(context.Background(), `SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&user, &super); err != nil {
		t.Fatal(err)
	}
	if user != "relay" || super {
		t.Errorf("database.url connects as %s (superuser %v), want the non-superuser relay", user, super)
	}

	// 4. The CMS's way, as psql would send it: one event committed, one rolled back.
	if _, err := conn.Exec(context.Background(), w.sql); err != nil {
		t.Fatalf("the walkthrough's SQL: %v", err)
	}
	rc.WaitFor(t, 1, 15*time.Second)
	// ... or the command.
	id := strings.TrimSpace(oneShot(w.emit))
	got := rc.WaitFor(t, 2, 15*time.Second)
	if got[1].Header.Get("webhook-id") != id {
		t.Fatalf("delivered webhook-id %q, want %q printed by emit", got[1].Header.Get("webhook-id"), id)
	}

	// 5. The audit trail: both deliveries, one attempt each, the rolled-back event absent
	// (once the recorder has written the second, which it batches).
	audit := func() []string {
		rows, err := conn.Query(context.Background(), w.audit)
		if err != nil {
			t.Fatalf("the walkthrough's audit query: %v", err)
		}
		defer rows.Close()
		var audited []string
		for rows.Next() {
			var event, status string
			var attempts int
			var code *int
			var ms *int64
			if err := rows.Scan(&event, &status, &attempts, &code, &ms); err != nil {
				t.Fatal(err)
			}
			audited = append(audited, fmt.Sprintf("%s %s %d %v", event, status, attempts, code != nil && *code == http.StatusOK))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return audited
	}
	want := []string{"post.published succeeded 1 true", "post.published succeeded 1 true"}
	testutil.Eventually(t, 10*time.Second, func() bool { return slices.Equal(audit(), want) },
		"the audit query's rows never became %q", want)

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
	oneShot([]string{"emit", "post.edited", "--data", `{"post":{"current":{"id":"1"},"previous":{"title":"x"}}}`})
	rc.WaitFor(t, 3, 15*time.Second)
	for _, r := range rc.Requests() {
		if strings.Contains(string(r.Body), `"previous":{"id":"2"}`) {
			t.Errorf("the rolled-back post.deleted was delivered: %s", r.Body)
		}
	}
}

// walkthrough is what the README's "A five-minute walkthrough" runs.
type walkthrough struct {
	build                []string // the go build command
	binary               string   // the path every ./... command runs, as written
	run, add, list, emit []string // the relay's arguments in steps 1, 3 and 4
	sql, audit           string   // step 4's SQL and step 5's query
}

func readWalkthrough(t *testing.T) walkthrough {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(moduleRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(raw), "## A five-minute walkthrough")
	_, block, ok2 := strings.Cut(section, "```sh\n")
	block, _, ok3 := strings.Cut(block, "\n```")
	if !ok || !ok2 || !ok3 {
		t.Fatal("README.md: no sh block under \"A five-minute walkthrough\"")
	}
	var w walkthrough
	var relayLines [][]string
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "# or:"))
		words := shellWords(line)
		switch {
		case len(words) > 2 && words[0] == "go" && words[1] == "build":
			w.build = words
		case strings.HasPrefix(line, "#"):
		default:
			for i, word := range words {
				if strings.HasPrefix(word, "./") {
					if w.binary != "" && word != w.binary {
						t.Fatalf("README walkthrough runs both %s and %s", w.binary, word)
					}
					w.binary = word
					relayLines = append(relayLines, slices.DeleteFunc(words[i+1:], func(s string) bool { return s == "&" }))
					break
				}
			}
		}
	}
	for _, args := range relayLines {
		switch {
		case len(args) > 0 && args[0] == "run":
			w.run = args
		case len(args) > 1 && args[0] == "webhooks" && args[1] == "add":
			w.add = args
		case len(args) > 1 && args[0] == "webhooks" && args[1] == "list":
			w.list = args
		case len(args) > 0 && args[0] == "emit":
			w.emit = args
		}
	}
	if _, sql, ok := strings.Cut(block, "<<'SQL'\n"); ok {
		w.sql, _, _ = strings.Cut(sql, "\nSQL\n")
	}
	if _, q, ok := strings.Cut(block, `psql "$(cat .relay/database.url)" -c '`); ok {
		w.audit, _, _ = strings.Cut(q, "'")
	}
	if w.build == nil || w.binary == "" || w.run == nil || w.add == nil || w.list == nil || w.emit == nil || w.sql == "" || w.audit == "" {
		t.Fatalf("README walkthrough: missing a step (build %q, binary %q, run %q, add %q, list %q, emit %q, SQL %t, audit %t)",
			w.build, w.binary, w.run, w.add, w.list, w.emit, w.sql != "", w.audit != "")
	}
	return w
}

// buildAsWalkthrough runs the README's build line in the repository's root and returns
// the binary the walkthrough then runs.
func buildAsWalkthrough(t *testing.T, w walkthrough) string {
	t.Helper()
	root := moduleRoot(t)
	out := w.build[slices.Index(w.build, "-o")+1]
	if filepath.Join(root, out) != filepath.Join(root, w.binary) {
		t.Fatalf("README walkthrough builds %s but runs %s", out, w.binary)
	}
	bin := filepath.Join(root, w.binary)
	// Go writes `-o dir` into an existing directory; the walkthrough would then run a
	// directory. Refuse before building rather than litter the source folder.
	if fi, err := os.Stat(bin); err == nil && fi.IsDir() {
		t.Fatalf("README walkthrough: %s is a directory of the repository, so `%s` writes the binary into it and `%s run` fails",
			w.binary, strings.Join(w.build, " "), w.binary)
	}
	cmd := exec.Command(w.build[0], w.build[1:]...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(w.build, " "), err, out)
	}
	if fi, err := os.Stat(bin); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o100 == 0 {
		t.Fatalf("after %s, %s is not an executable file: %v", strings.Join(w.build, " "), w.binary, err)
	}
	return bin
}

// runWithStderr runs a relay command in dir and returns its stderr.
func runWithStderr(t *testing.T, bin, dir string, args []string, env ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append(withoutRelaySettings(os.Environ()), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("relay %v: %v\n%s", args, err, stderr.String())
	}
	return stderr.String()
}

// withoutRelaySettings drops the relay's own variables from env (PG_BINDIR, which says
// where this machine's PostgreSQL is, stays).
func withoutRelaySettings(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		return strings.HasPrefix(name, "RELAY_") || name == "DATABASE_URL" || name == "WEBHOOK_SECRET"
	})
}

// shellWords splits a line of the README's shell as sh would, for the quoting it uses
// (single quotes).
func shellWords(line string) []string {
	var words []string
	var word strings.Builder
	inWord, quoted := false, false
	for _, r := range line {
		switch {
		case quoted && r == '\'':
			quoted = false
		case quoted:
			word.WriteRune(r)
		case r == '\'':
			quoted, inWord = true, true
		case r == ' ' || r == '\t':
			if inWord {
				words = append(words, word.String())
				word.Reset()
				inWord = false
			}
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, word.String())
	}
	return words
}
