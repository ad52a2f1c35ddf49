// Package bench measures the relay end to end on this machine: a real `relay run`
// process, a real PostgreSQL and local receivers, with the machine's own limits (raw
// INSERT transactions, raw HTTP POSTs) measured in the same run so that every relay
// figure can be read as a ratio.
package bench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/relay/pglocal"
	"github.com/relayhq/relay/schema"
)

// Options sizes the run. Zero sizes skip their scenario.
type Options struct {
	// DatabaseURL is a server to benchmark on (a scratch database is created there and
	// dropped afterwards); empty starts a private PostgreSQL in a temporary directory.
	DatabaseURL string
	// Durable keeps fsync on for the private PostgreSQL (default off: the figures then
	// measure the relay, not this machine's disk).
	Durable bool
	// RelayBinary is the relay executable to run (normally this very binary).
	RelayBinary string
	// RelayEnv is extra environment for the relay process (e.g. RELAY_WORKERS=128).
	RelayEnv []string

	Rate         int           // (a) events per second
	SteadyFor    time.Duration // (a) how long
	Backlog      int           // (b) events in the backlog
	FanoutEvents int           // (c) events
	Webhooks     int           // (c) webhooks each event goes to
	IdleFor      time.Duration // (d) how long idle

	Progress io.Writer
}

// DefaultOptions are the sizes of the targets.
func DefaultOptions() Options {
	return Options{Rate: 500, SteadyFor: 20 * time.Second, Backlog: 100_000, FanoutEvents: 10_000, Webhooks: 10, IdleFor: 30 * time.Second}
}

// Latency percentiles, commit to receipt.
type Latency struct {
	P50, P90, P99, Max time.Duration
}

// Scenario is one scenario's figures.
type Scenario struct {
	Name            string        `json:"name"`
	Events          int           `json:"events"`
	Deliveries      int           `json:"deliveries"`
	Duplicates      int           `json:"duplicates"`
	Elapsed         time.Duration `json:"elapsed_ns"`
	PerSecond       float64       `json:"deliveries_per_second"`
	Latency         *Latency      `json:"latency,omitempty"`
	RelayCPUSeconds float64       `json:"relay_cpu_seconds"`
	RelayCPUPercent float64       `json:"relay_cpu_percent_of_one_core"`
	PeakRSSMiB      float64       `json:"relay_peak_rss_mib"`
	VsInsert        float64       `json:"ratio_to_raw_insert_tx"`
	VsHTTP          float64       `json:"ratio_to_raw_http_post"`
}

// Report is the whole run.
type Report struct {
	Machine        string     `json:"machine"`
	PostgreSQL     string     `json:"postgresql"`
	Durable        bool       `json:"durable"`
	RelayEnv       []string   `json:"relay_env,omitempty"`
	InsertTxPerSec float64    `json:"raw_insert_tx_per_second"`
	InsertTx1Conn  float64    `json:"raw_insert_tx_per_second_1_conn"`
	HTTPPerSec     float64    `json:"raw_http_post_per_second"`
	Scenarios      []Scenario `json:"scenarios"`
}

// Run executes the baselines and every sized scenario.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	b := &bench{o: o, rep: &Report{Durable: o.Durable, RelayEnv: o.RelayEnv}}
	if err := b.startServer(ctx); err != nil {
		return nil, err
	}
	defer b.stopServer()
	b.rep.Machine = machine()

	b.progress("baseline: raw single-row INSERT transactions")
	if err := b.baselineInsert(ctx); err != nil {
		return nil, err
	}
	b.progress("baseline: raw HTTP POSTs")
	if err := b.baselineHTTP(ctx); err != nil {
		return nil, err
	}
	type scenario struct {
		on  bool
		run func(context.Context) (Scenario, error)
	}
	for _, s := range []scenario{
		{o.Rate > 0 && o.SteadyFor > 0, b.steady},
		{o.Backlog > 0, b.backlog},
		{o.FanoutEvents > 0 && o.Webhooks > 0, b.fanout},
		{o.IdleFor > 0, b.idle},
	} {
		if !s.on {
			continue
		}
		res, err := s.run(ctx)
		if err != nil {
			return b.rep, err
		}
		if res.PerSecond > 0 {
			res.VsInsert = res.PerSecond / b.rep.InsertTxPerSec
			res.VsHTTP = res.PerSecond / b.rep.HTTPPerSec
		}
		b.rep.Scenarios = append(b.rep.Scenarios, res)
	}
	fmt.Fprintln(o.Progress)
	return b.rep, nil
}

type bench struct {
	o       Options
	rep     *Report
	admin   string // URL of a database to CREATE DATABASE from
	srv     *pglocal.Server
	tmpDir  string
	dbCount int
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.o.Progress, "\r\033[K"+format, args...)
}

func (b *bench) startServer(ctx context.Context) error {
	if b.o.DatabaseURL != "" {
		b.admin = b.o.DatabaseURL
		return nil
	}
	dir, err := os.MkdirTemp("", "relay-bench-")
	if err != nil {
		return fmt.Errorf("bench: temp dir: %w", err)
	}
	_ = os.Chmod(dir, 0o755)
	b.tmpDir = dir
	settings := map[string]string{"shared_buffers": "512MB", "max_wal_size": "4GB"}
	b.progress("starting a private PostgreSQL in %s", dir)
	srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: dir + "/pg", Fast: !b.o.Durable, Settings: settings})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	b.srv = srv
	b.admin = srv.URL("postgres")
	return nil
}

func (b *bench) stopServer() {
	if b.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = b.srv.Stop(ctx)
	}
	if b.tmpDir != "" {
		_ = os.RemoveAll(b.tmpDir)
	}
}

// newDatabase creates a migrated scratch database and returns its URL and a drop func.
func (b *bench) newDatabase(ctx context.Context) (string, *pgxpool.Pool, func(), error) {
	buf := make([]byte, 4)
	_, _ = rand.Read(buf)
	name := "relay_bench_" + hex.EncodeToString(buf)
	admin, err := pgx.Connect(ctx, b.admin)
	if err != nil {
		return "", nil, nil, fmt.Errorf("bench: connect: %w", err)
	}
	defer admin.Close(ctx)
	if b.rep.PostgreSQL == "" {
		_ = admin.QueryRow(ctx, "SHOW server_version").Scan(&b.rep.PostgreSQL)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", nil, nil, fmt.Errorf("bench: create database: %w", err)
	}
	cfg, err := pgx.ParseConfig(b.admin)
	if err != nil {
		return "", nil, nil, err
	}
	cfg.Database = name
	url := withDatabase(b.admin, name)
	drop := func() {
		c, err := pgx.Connect(context.Background(), b.admin)
		if err == nil {
			_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
			_ = c.Close(context.Background())
		}
	}
	if err := schema.Migrate(ctx, url); err != nil {
		drop()
		return "", nil, nil, err
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		drop()
		return "", nil, nil, err
	}
	pcfg.MaxConns = 16
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		drop()
		return "", nil, nil, err
	}
	return url, pool, func() { pool.Close(); drop() }, nil
}

// withDatabase swaps the database of a postgres:// URL or a key=value DSN.
func withDatabase(conn, name string) string {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		u := conn
		q := ""
		if i := strings.IndexByte(u, '?'); i >= 0 {
			u, q = u[:i], u[i:]
		}
		scheme := u[:strings.Index(u, "://")+3]
		rest := u[len(scheme):]
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			rest = rest[:i]
		}
		return scheme + rest + "/" + name + q
	}
	return conn + " dbname=" + name
}

func (b *bench) baselineInsert(ctx context.Context) error {
	_, pool, drop, err := b.newDatabase(ctx)
	if err != nil {
		return err
	}
	defer drop()
	if _, err := pool.Exec(ctx, `CREATE TABLE raw (id bigserial PRIMARY KEY, payload json)`); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	measure := func(conns int, d time.Duration) (float64, error) {
		var n atomic.Int64
		var wg sync.WaitGroup
		errc := make(chan error, conns)
		deadline := time.Now().Add(d)
		for range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					if _, err := pool.Exec(ctx, `INSERT INTO raw (payload) VALUES ($1)`, `{"post":{"current":{"id":"1"}}}`); err != nil {
						errc <- err
						return
					}
					n.Add(1)
				}
			}()
		}
		start := time.Now()
		wg.Wait()
		close(errc)
		if err := <-errc; err != nil {
			return 0, fmt.Errorf("bench: raw insert: %w", err)
		}
		return float64(n.Load()) / time.Since(start).Seconds(), nil
	}
	if b.rep.InsertTx1Conn, err = measure(1, 2*time.Second); err != nil {
		return err
	}
	b.rep.InsertTxPerSec, err = measure(8, 3*time.Second)
	return err
}

func (b *bench) baselineHTTP(ctx context.Context) error {
	rc, err := newReceiver()
	if err != nil {
		return err
	}
	defer rc.close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	body := []byte(`{"post":{"current":{"id":"1","title":"x"},"previous":{}}}`)
	var n atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Second)
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				resp, err := client.Post(rc.url, "application/json", strings.NewReader(string(body)))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	b.rep.HTTPPerSec = float64(n.Load()) / time.Since(start).Seconds()
	if b.rep.HTTPPerSec == 0 {
		return errors.New("bench: raw HTTP baseline made no request")
	}
	return nil
}

// receiver counts deliveries and measures commit-to-receipt latency.
type receiver struct {
	url       string
	srv       *http.Server
	ln        net.Listener
	committed sync.Map // event id -> time.Time of its commit
	mu        sync.Mutex
	seen      map[string]int
	lat       []time.Duration
	count     atomic.Int64
	last      atomic.Int64 // unix nanos of the latest request
}

func newReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: receiver: %w", err)
	}
	rc := &receiver{ln: ln, url: "http://" + ln.Addr().String() + "/hook", seen: map[string]int{}}
	rc.srv = &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = rc.srv.Serve(ln) }()
	return rc, nil
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	now := time.Now()
	id := r.Header.Get("webhook-id")
	rc.mu.Lock()
	if id != "" {
		rc.seen[id+r.URL.Path]++
		if at, ok := rc.committed.Load(id); ok {
			rc.lat = append(rc.lat, now.Sub(at.(time.Time)))
		}
	}
	rc.mu.Unlock()
	rc.count.Add(1)
	rc.last.Store(now.UnixNano())
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) duplicates() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	d := 0
	for _, n := range rc.seen {
		d += n - 1
	}
	return d
}

func (rc *receiver) latency() *Latency {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.lat) == 0 {
		return nil
	}
	l := slices.Clone(rc.lat)
	slices.Sort(l)
	at := func(p float64) time.Duration { return l[min(len(l)-1, int(p*float64(len(l))))] }
	return &Latency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: l[len(l)-1]}
}

func (rc *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = rc.srv.Shutdown(ctx)
}

// relayProc is a running `relay run`, measured through /proc.
type relayProc struct {
	cmd  *exec.Cmd
	done chan error
	out  *strings.Builder
}

func (b *bench) startRelay(ctx context.Context, dbURL string) (*relayProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(b.o.RelayBinary, "run")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "RELAY_ADDR="+addr,
		"RELAY_ALLOWED_TARGETS=127.0.0.1", "RELAY_LOG_FORMAT=json", "RELAY_LOG_LEVEL=warn")
	cmd.Env = append(cmd.Env, b.o.RelayEnv...)
	p := &relayProc{cmd: cmd, done: make(chan error, 1), out: &strings.Builder{}}
	var mu sync.Mutex
	cmd.Stderr = writerFunc(func(b []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return p.out.Write(b) })
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start relay: %w", err)
	}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("bench: relay exited: %v: %s", err, p.out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.stop()
	return nil, errors.New("bench: relay not ready after 30s")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

// cpu returns user+system CPU seconds of the process so far.
func (p *relayProc) cpu() float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// fields[11], fields[12] are utime and stime (fields 14 and 15 of stat(5)).
	ut, _ := strconv.ParseFloat(fields[11], 64)
	st, _ := strconv.ParseFloat(fields[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// peakRSS returns VmHWM in MiB.
func (p *relayProc) peakRSS() float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

func (p *relayProc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func addWebhooks(ctx context.Context, pool *pgxpool.Pool, rc *receiver, n int) error {
	for i := range n {
		if _, err := pool.Exec(ctx, `INSERT INTO relay.webhooks (event, target_url) VALUES ('post.published', $1)`,
			fmt.Sprintf("%s/%d", rc.url, i)); err != nil {
			return fmt.Errorf("bench: add webhook: %w", err)
		}
	}
	return nil
}

func payload(i int) []byte {
	return fmt.Appendf(nil, `{"post":{"current":{"id":"%024d","title":"Benchmark post %d","status":"published"},"previous":{"status":"draft"}}}`, i, i)
}

// emitBacklog writes n events in transactions of 1000 before the relay starts.
func emitBacklog(ctx context.Context, pool *pgxpool.Pool, n int, progress func(int)) error {
	const batch = 1000
	for i := 0; i < n; i += batch {
		events := make([]outbox.Event, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			events = append(events, outbox.Event{Name: "post.published", Data: payload(j)})
		}
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := outbox.EmitBatch(ctx, tx, events)
			return err
		}); err != nil {
			return fmt.Errorf("bench: emit backlog: %w", err)
		}
		progress(min(i+batch, n))
	}
	return nil
}

// drain starts a relay on a prepared database and measures until want deliveries.
func (b *bench) drain(ctx context.Context, name string, url string, rc *receiver, events, want int) (Scenario, error) {
	res := Scenario{Name: name, Events: events}
	p, err := b.startRelay(ctx, url)
	if err != nil {
		return res, err
	}
	defer p.stop()
	start := time.Now()
	cpu0 := p.cpu()
	deadline := start.Add(10 * time.Minute)
	for rc.count.Load() < int64(want) {
		if time.Now().After(deadline) {
			return res, fmt.Errorf("bench: %s: only %d of %d deliveries after 10 minutes", name, rc.count.Load(), want)
		}
		select {
		case err := <-p.done:
			return res, fmt.Errorf("bench: relay died: %v: %s", err, p.out.String())
		case <-time.After(100 * time.Millisecond):
		}
		b.progress("%s: %d/%d deliveries, %.0f/s", name, rc.count.Load(), want, float64(rc.count.Load())/time.Since(start).Seconds())
	}
	res.measure(p, rc, start, cpu0)
	return res, nil
}

// fixture is a scratch database with webhooks pointing at a fresh receiver.
type fixture struct {
	url  string
	pool *pgxpool.Pool
	rc   *receiver
	drop func()
}

func (f *fixture) close() { f.rc.close(); f.drop() }

func (b *bench) setup(ctx context.Context, webhooks int) (*fixture, error) {
	url, pool, drop, err := b.newDatabase(ctx)
	if err != nil {
		return nil, err
	}
	rc, err := newReceiver()
	if err != nil {
		drop()
		return nil, err
	}
	f := &fixture{url: url, pool: pool, rc: rc, drop: drop}
	if err := addWebhooks(ctx, pool, rc, webhooks); err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// measure fills in what every delivering scenario reports, from start to the last
// request the receiver got.
func (s *Scenario) measure(p *relayProc, rc *receiver, start time.Time, cpu0 float64) {
	s.Elapsed = time.Duration(rc.last.Load() - start.UnixNano())
	s.Deliveries = int(rc.count.Load())
	s.PerSecond = float64(s.Deliveries) / s.Elapsed.Seconds()
	s.RelayCPUSeconds = p.cpu() - cpu0
	s.RelayCPUPercent = 100 * s.RelayCPUSeconds / s.Elapsed.Seconds()
	s.PeakRSSMiB = p.peakRSS()
	s.Duplicates = rc.duplicates()
}

// steady is scenario (a): a steady rate of single-event transactions, one webhook.
func (b *bench) steady(ctx context.Context) (Scenario, error) {
	name := fmt.Sprintf("a: steady %d events/s for %s, 1 webhook", b.o.Rate, b.o.SteadyFor)
	f, err := b.setup(ctx, 1)
	if err != nil {
		return Scenario{}, err
	}
	defer f.close()
	url, pool, rc := f.url, f.pool, f.rc
	p, err := b.startRelay(ctx, url)
	if err != nil {
		return Scenario{}, err
	}
	defer p.stop()
	total := int(float64(b.o.Rate) * b.o.SteadyFor.Seconds())
	cpu0 := p.cpu()
	start := time.Now()
	for i := range total {
		due := start.Add(time.Duration(float64(i) / float64(b.o.Rate) * float64(time.Second)))
		if err := pause(ctx, time.Until(due)); err != nil {
			return Scenario{}, err
		}
		tx, err := pool.Begin(ctx)
		if err != nil {
			return Scenario{}, fmt.Errorf("bench: %w", err)
		}
		id, err := outbox.Emit(ctx, tx, "post.published", payload(i))
		if err != nil {
			_ = tx.Rollback(ctx)
			return Scenario{}, err
		}
		if err := tx.Commit(ctx); err != nil {
			return Scenario{}, fmt.Errorf("bench: commit: %w", err)
		}
		rc.committed.Store(id, time.Now())
		if i%100 == 0 {
			b.progress("%s: %d/%d events, %d delivered", name, i, total, rc.count.Load())
		}
	}
	deadline := time.Now().Add(time.Minute)
	for rc.count.Load() < int64(total) && time.Now().Before(deadline) {
		if err := pause(ctx, 20*time.Millisecond); err != nil {
			return Scenario{}, err
		}
	}
	res := Scenario{Name: name, Events: total}
	res.measure(p, rc, start, cpu0)
	res.Latency = rc.latency()
	return res, nil
}

// backlog is scenario (b): a backlog of events drained to one webhook.
func (b *bench) backlog(ctx context.Context) (Scenario, error) {
	return b.prefilled(ctx, fmt.Sprintf("b: drain a backlog of %d events, 1 webhook", b.o.Backlog), b.o.Backlog, 1)
}

// fanout is scenario (c): events fanned out to several webhooks.
func (b *bench) fanout(ctx context.Context) (Scenario, error) {
	return b.prefilled(ctx, fmt.Sprintf("c: %d events fanned out to %d webhooks", b.o.FanoutEvents, b.o.Webhooks), b.o.FanoutEvents, b.o.Webhooks)
}

func (b *bench) prefilled(ctx context.Context, name string, events, webhooks int) (Scenario, error) {
	f, err := b.setup(ctx, webhooks)
	if err != nil {
		return Scenario{}, err
	}
	defer f.close()
	url, pool, rc := f.url, f.pool, f.rc
	if err := emitBacklog(ctx, pool, events, func(n int) { b.progress("%s: writing the backlog %d/%d", name, n, events) }); err != nil {
		return Scenario{}, err
	}
	return b.drain(ctx, name, url, rc, events, events*webhooks)
}

// idle is scenario (d): a relay with nothing to do.
func (b *bench) idle(ctx context.Context) (Scenario, error) {
	name := fmt.Sprintf("d: idle for %s", b.o.IdleFor)
	f, err := b.setup(ctx, 1)
	if err != nil {
		return Scenario{}, err
	}
	defer f.close()
	p, err := b.startRelay(ctx, f.url)
	if err != nil {
		return Scenario{}, err
	}
	defer p.stop()
	if err := pause(ctx, 2*time.Second); err != nil { // start-up work is not idling
		return Scenario{}, err
	}
	cpu0 := p.cpu()
	start := time.Now()
	for time.Since(start) < b.o.IdleFor {
		b.progress("%s: %.0fs", name, time.Since(start).Seconds())
		if err := pause(ctx, time.Second); err != nil {
			return Scenario{}, err
		}
	}
	res := Scenario{Name: name, Elapsed: time.Since(start)}
	res.RelayCPUSeconds = p.cpu() - cpu0
	res.RelayCPUPercent = 100 * res.RelayCPUSeconds / res.Elapsed.Seconds()
	res.PeakRSSMiB = p.peakRSS()
	return res, nil
}

func machine() string {
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
				mem = fmt.Sprintf(", %.0f GiB RAM", kb/1024/1024)
			}
		}
	}
	return fmt.Sprintf("%d cores%s, %s %s/%s", runtime.NumCPU(), mem, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "machine: %s; PostgreSQL %s (fsync %s)\n", r.Machine, r.PostgreSQL, map[bool]string{true: "on", false: "off"}[r.Durable])
	if len(r.RelayEnv) > 0 {
		fmt.Fprintf(w, "relay env: %s\n", strings.Join(r.RelayEnv, " "))
	}
	fmt.Fprintf(w, "baseline: raw single-row INSERT tx/s %.0f (8 conns), %.0f (1 conn); raw HTTP POST/s %.0f (64 conns)\n",
		r.InsertTxPerSec, r.InsertTx1Conn, r.HTTPPerSec)
	for _, s := range r.Scenarios {
		fmt.Fprintf(w, "\n%s\n", s.Name)
		if s.Deliveries > 0 {
			fmt.Fprintf(w, "  deliveries %d in %s: %.0f/s = %.2fx raw INSERT tx/s, %.3fx raw HTTP POST/s; duplicates %d\n",
				s.Deliveries, s.Elapsed.Round(time.Millisecond), s.PerSecond, s.VsInsert, s.VsHTTP, s.Duplicates)
		}
		if s.Latency != nil {
			fmt.Fprintf(w, "  latency commit->receipt: p50 %s  p90 %s  p99 %s  max %s\n",
				ms(s.Latency.P50), ms(s.Latency.P90), ms(s.Latency.P99), ms(s.Latency.Max))
		}
		fmt.Fprintf(w, "  relay CPU %.2fs (%.2f%% of one core), peak RSS %.1f MiB\n", s.RelayCPUSeconds, s.RelayCPUPercent, s.PeakRSSMiB)
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// pause waits d (nothing when d <= 0) unless ctx ends first (Ctrl-C stops the bench).
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
