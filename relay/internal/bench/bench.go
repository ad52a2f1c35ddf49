// Package bench measures the relay end to end on this machine: a real `relay run`
// process, a real PostgreSQL and local receivers, with the machine's own limits (raw
// INSERT transactions, raw HTTP POSTs) measured in the same run so that every relay
// figure can be read as a ratio.
//
// The private PostgreSQL is durable by default (fsync, synchronous_commit and
// full_page_writes on, as a production server): the relay's and the CMS's costs are
// commits, and a commit without a flush costs a fraction of one with it. Fast mode turns
// the three off. Against DATABASE_URL the server's own settings apply, and the report
// reads them back rather than assuming them.
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/relay/pglocal"
	"github.com/relayhq/relay/schema"
)

// Scenario ids, in the order they run.
const (
	ScenarioSteady   = "a" // steady rate, commit→receipt latency
	ScenarioBacklog  = "b" // backlog drain, 1 webhook
	ScenarioFanout   = "c" // events × webhooks
	ScenarioIdle     = "d" // idle CPU and RSS
	ScenarioWriter   = "w" // what relay.emit costs the CMS's transaction
	ScenarioSizes    = "e" // backlog drain at several sizes
	ScenarioWidths   = "f" // webhooks per event
	ScenarioBodies   = "g" // body sizes
	ScenarioReceiver = "h" // slow receivers
	ScenarioReplay   = "r" // a replay beside live traffic
)

// AllScenarios is every scenario id, in running order.
var AllScenarios = []string{ScenarioSteady, ScenarioBacklog, ScenarioFanout, ScenarioIdle,
	ScenarioWriter, ScenarioSizes, ScenarioWidths, ScenarioBodies, ScenarioReceiver, ScenarioReplay}

// Options sizes the run. Zero sizes (and empty lists) skip their scenario.
type Options struct {
	// DatabaseURL is a server to benchmark on (a scratch database is created there and
	// dropped afterwards); empty starts a private PostgreSQL in a temporary directory.
	DatabaseURL string
	// Fast turns fsync, synchronous_commit and full_page_writes off in the private
	// PostgreSQL (default on). It has no effect with DatabaseURL.
	Fast bool
	// PGBinDir is where the private PostgreSQL's server binaries are; empty: found.
	PGBinDir string
	// RelayBinary is the relay executable to run (normally this very binary).
	RelayBinary string
	// RelayEnv is extra environment for the relay process (e.g. RELAY_WORKERS=128).
	RelayEnv []string
	// Scenarios lists the scenario ids to run (see AllScenarios); empty runs all.
	Scenarios []string

	Rate         int           // (a) events per second
	SteadyFor    time.Duration // (a) how long
	Backlog      int           // (b) events in the backlog
	FanoutEvents int           // (c) events
	Webhooks     int           // (c) webhooks each event goes to
	IdleFor      time.Duration // (d) how long idle

	WriterFor     time.Duration // (w) length of one plain or emitting run
	WriterRounds  int           // (w) plain/emit pairs per variant and client count
	WriterClients []int         // (w) client connections
	WriterRows    int           // (w) rows in the CMS's posts table

	BacklogSizes []int // (e) backlog sizes drained to one webhook

	Widths      []int // (f) webhooks per event
	WidthEvents int   // (f) events at each width

	BodySizes  []int // (g) body sizes in bytes
	BodyEvents int   // (g) events at each size (at most BodyBudget bytes of bodies)
	BodyBudget int   // (g) bytes of bodies at most per size

	ReceiverDelays []time.Duration // (h) receiver latencies
	ReceiverEvents int             // (h) events at each latency

	ReplayEvents int // (r) events of the kept log replayed (the live load is (a)'s rate and duration)

	// DrainTimeout bounds one drain; a drain that runs out is reported, with what it
	// delivered so far, as a failed check, and the run goes on.
	DrainTimeout time.Duration

	Progress io.Writer
}

// DefaultOptions are the sizes of the targets.
func DefaultOptions() Options {
	return Options{
		Rate: 500, SteadyFor: 20 * time.Second, Backlog: 100_000, FanoutEvents: 10_000, Webhooks: 10, IdleFor: 30 * time.Second,
		WriterFor: 2 * time.Second, WriterRounds: 5, WriterClients: []int{1, 8}, WriterRows: 10_000,
		BacklogSizes: []int{10_000, 100_000, 1_000_000},
		Widths:       []int{1, 10, 100, 1000}, WidthEvents: 1000,
		BodySizes: []int{200, 8 << 10, 64 << 10, 1 << 20}, BodyEvents: 1000, BodyBudget: 256 << 20,
		ReceiverDelays: []time.Duration{5 * time.Millisecond, 50 * time.Millisecond}, ReceiverEvents: 2000,
		ReplayEvents: 1_000_000,
		DrainTimeout: 30 * time.Minute,
	}
}

// Quick shrinks o to sizes that finish in about two minutes.
func (o *Options) Quick() {
	o.SteadyFor, o.Backlog, o.FanoutEvents, o.IdleFor = 5*time.Second, 10_000, 2_000, 5*time.Second
	o.WriterFor, o.WriterRounds = time.Second, 3
	o.BacklogSizes = []int{1000, 10_000}
	o.Widths, o.WidthEvents = []int{1, 10, 100}, 100
	o.BodyEvents, o.BodyBudget = 100, 16<<20
	o.ReceiverEvents = 300
	o.ReplayEvents = 50_000
}

// Latency percentiles, commit to receipt.
type Latency struct {
	P50, P90, P99, Max time.Duration
}

// Scenario is one delivering (or idle) run's figures.
type Scenario struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Mode is the server's durability, repeated here so that no figure travels without it.
	Mode     string `json:"mode"`
	Events   int    `json:"events"`
	Webhooks int    `json:"webhooks,omitempty"`
	// Expected deliveries; Lost counts (event, webhook) pairs never received.
	Expected   int           `json:"expected_deliveries"`
	Deliveries int           `json:"deliveries"`
	Duplicates int           `json:"duplicates"`
	Lost       int           `json:"lost"`
	OK         bool          `json:"ok"`
	Failure    string        `json:"failure,omitempty"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	PerSecond  float64       `json:"deliveries_per_second"`
	Latency    *Latency      `json:"latency,omitempty"`
	// EmitPerSecond is the rate (a)'s writers reached (the target is --rate).
	EmitPerSecond   float64 `json:"emitted_per_second,omitempty"`
	RelayCPUSeconds float64 `json:"relay_cpu_seconds"`
	RelayCPUPercent float64 `json:"relay_cpu_percent_of_one_core"`
	PeakRSSMiB      float64 `json:"relay_peak_rss_mib"`
	VsInsert        float64 `json:"ratio_to_raw_insert_tx"`
	VsHTTP          float64 `json:"ratio_to_raw_http_post"`
	// RelayEnv is environment this run gave the relay on top of the report's RelayEnv.
	RelayEnv []string `json:"relay_env,omitempty"`

	// The backlog written before the relay started (b, c, e, f, g, h).
	WriteElapsed   time.Duration `json:"write_ns,omitempty"`
	WritePerSecond float64       `json:"write_events_per_second,omitempty"`

	BodyBytes     int           `json:"body_bytes,omitempty"`         // (g)
	MBPerSecond   float64       `json:"mb_per_second,omitempty"`      // (g) 10^6 bytes of bodies delivered per second
	ReceiverDelay time.Duration `json:"receiver_delay_ns,omitempty"`  // (h)
	Advice        *Concurrency  `json:"concurrency_advice,omitempty"` // (h)

	// Cost per delivery.
	RelayCPUMicrosPerDelivery float64  `json:"relay_cpu_us_per_delivery,omitempty"`
	PGCPUSeconds              *float64 `json:"postgres_cpu_seconds,omitempty"`
	PGCPUMicrosPerDelivery    *float64 `json:"postgres_cpu_us_per_delivery,omitempty"`
	// Statements are the top statements of the run by total time (pg_stat_statements);
	// StatementsNote says why there are none ("n/a: ...").
	Statements     []Statement `json:"statements,omitempty"`
	StatementsNote string      `json:"statements_note,omitempty"`
	// StatementsMicrosPerDelivery is the execution time of every statement of the run.
	StatementsMicrosPerDelivery float64    `json:"statements_us_per_delivery,omitempty"`
	Fanout                      *Statement `json:"fanout_statement,omitempty"`

	// Replay is (r)'s.
	Replay *ReplayFigures `json:"replay,omitempty"`

	// Tables are the relay's tables after the drain (relay stopped), and their sum
	// divided by deliveries.
	Tables             []TableSize `json:"tables,omitempty"`
	PGBytesPerDelivery float64     `json:"pg_bytes_per_delivery,omitempty"`
}

// Concurrency is what (h) says a user must set for a receiver with that latency.
type Concurrency struct {
	// Relay's settings in the default run, and the in-flight ceiling they give.
	WebhookConcurrency int     `json:"webhook_concurrency"`
	Workers            int     `json:"workers"`
	CeilingPerSecond   float64 `json:"ceiling_per_second"`
	// TargetPerSecond is the relay's drain rate to an instant receiver in this run, and
	// Needed the requests in flight it takes at this latency (Little's law).
	TargetPerSecond float64 `json:"target_per_second"`
	Needed          int     `json:"needed_webhook_concurrency"`
	Setting         string  `json:"setting"`
	// Verified is the rate of a run with Setting, if one was made.
	VerifiedPerSecond float64 `json:"verified_per_second,omitempty"`
}

// Report is the whole run.
type Report struct {
	Machine    string `json:"machine"`
	PostgreSQL string `json:"postgresql"`
	// Server is "private" (started by the bench) or "DATABASE_URL".
	Server string `json:"server"`
	// Mode is "durable (...)" or "fast (...)", from the server's own settings.
	Mode              string `json:"mode"`
	Durable           bool   `json:"durable"` // fsync and synchronous_commit on
	Fsync             bool   `json:"fsync"`
	SynchronousCommit string `json:"synchronous_commit"`
	FullPageWrites    bool   `json:"full_page_writes"`
	PGStatStatements  bool   `json:"pg_stat_statements"`
	// PGStatStatementsNote says why statements are n/a.
	PGStatStatementsNote string      `json:"pg_stat_statements_note,omitempty"`
	RelayEnv             []string    `json:"relay_env,omitempty"`
	InsertTxPerSec       float64     `json:"raw_insert_tx_per_second"`
	InsertTx1Conn        float64     `json:"raw_insert_tx_per_second_1_conn"`
	HTTPPerSec           float64     `json:"raw_http_post_per_second"`
	Scenarios            []Scenario  `json:"scenarios"`
	Writer               *WriterCost `json:"writer_cost,omitempty"`
}

// Failed lists the scenarios that failed a check (duplicates, lost deliveries, a drain
// that ran out of time).
func (r *Report) Failed() []string {
	var failed []string
	for _, s := range r.Scenarios {
		if !s.OK {
			failed = append(failed, fmt.Sprintf("%s (%s)", s.Name, s.Failure))
		}
	}
	if r.Writer != nil && !r.Writer.OK {
		failed = append(failed, "w: "+r.Writer.Failure)
	}
	return failed
}

// Run executes the baselines and every selected, sized scenario. A scenario that fails a
// check is reported and the run goes on; an error ends it (the report so far is
// returned with it).
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Minute
	}
	want := map[string]bool{}
	for _, id := range o.Scenarios {
		if !slices.Contains(AllScenarios, id) {
			return nil, fmt.Errorf("bench: unknown scenario %q (known: %s)", id, strings.Join(AllScenarios, ","))
		}
		want[id] = true
	}
	if len(want) == 0 {
		for _, id := range AllScenarios {
			want[id] = true
		}
	}
	for _, n := range o.BodySizes {
		if n < sizedOverhead || n > maxBody {
			return nil, fmt.Errorf("bench: body size %d is out of range [%d, %d] (its JSON around the padding, the relay's limit)", n, sizedOverhead, maxBody)
		}
	}
	b := &bench{o: o, rep: &Report{RelayEnv: o.RelayEnv}}
	if err := b.startServer(ctx); err != nil {
		return nil, err
	}
	defer b.stopServer()
	defer b.dropTemplate()
	b.rep.Machine = machine()
	if err := b.readServer(ctx); err != nil {
		return nil, err
	}

	b.progress("baseline: raw single-row INSERT transactions")
	if err := b.baselineInsert(ctx); err != nil {
		return nil, err
	}
	b.progress("baseline: raw HTTP POSTs")
	if err := b.baselineHTTP(ctx); err != nil {
		return nil, err
	}
	type step struct {
		id  string
		on  bool
		run func(context.Context) ([]Scenario, error)
	}
	one := func(f func(context.Context) (Scenario, error)) func(context.Context) ([]Scenario, error) {
		return func(ctx context.Context) ([]Scenario, error) {
			s, err := f(ctx)
			return []Scenario{s}, err
		}
	}
	for _, s := range []step{
		{ScenarioSteady, o.Rate > 0 && o.SteadyFor > 0, one(b.steady)},
		{ScenarioBacklog, o.Backlog > 0, one(b.backlog)},
		{ScenarioFanout, o.FanoutEvents > 0 && o.Webhooks > 0, one(b.fanout)},
		{ScenarioIdle, o.IdleFor > 0, one(b.idle)},
		{ScenarioWriter, o.WriterFor > 0 && o.WriterRounds > 0 && len(o.WriterClients) > 0, b.writerStep},
		{ScenarioSizes, len(o.BacklogSizes) > 0, b.sizes},
		{ScenarioWidths, len(o.Widths) > 0 && o.WidthEvents > 0, b.widths},
		{ScenarioBodies, len(o.BodySizes) > 0 && o.BodyEvents > 0, b.bodies},
		{ScenarioReceiver, len(o.ReceiverDelays) > 0 && o.ReceiverEvents > 0, b.slowReceivers},
		{ScenarioReplay, o.ReplayEvents > 0 && o.Rate > 0 && o.SteadyFor > 0, one(b.replayScenario)},
	} {
		if !s.on || !want[s.id] {
			continue
		}
		res, err := s.run(ctx)
		if err != nil && len(res) > 0 {
			res = res[:len(res)-1] // the one the error cut short
		}
		for _, r := range res {
			if r.Name == "" { // a step that produced no scenario row (w)
				continue
			}
			b.add(r)
		}
		if err != nil {
			return b.rep, err
		}
	}
	fmt.Fprintln(o.Progress)
	return b.rep, nil
}

func (b *bench) add(r Scenario) {
	if r.PerSecond > 0 {
		r.VsInsert = r.PerSecond / b.rep.InsertTxPerSec
		r.VsHTTP = r.PerSecond / b.rep.HTTPPerSec
	}
	b.rep.Scenarios = append(b.rep.Scenarios, r)
}

type bench struct {
	o     Options
	rep   *Report
	admin string // URL of a database to CREATE DATABASE from
	srv   *pglocal.Server
	// tmpDir holds the private cluster.
	tmpDir string
	// stmtsPreloaded says pg_stat_statements is in the private cluster's
	// shared_preload_libraries; with DATABASE_URL it is found out per database.
	stmtsPreloaded bool
	// instantRate is the drain rate to an instant receiver, 1 webhook, measured in this
	// run ((b) or the first size of (e)), which (h) takes as what a slow receiver
	// should get.
	instantRate float64
	// postmaster is the server's pid when it runs on this machine (0: not found), for
	// PostgreSQL's CPU per delivery.
	postmaster int
	// tmpl is the migrated template every scratch database copies.
	tmpl string
}

func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.o.Progress, "\r\033[K"+format, args...)
}

func (b *bench) startServer(ctx context.Context) error {
	if b.o.DatabaseURL != "" {
		b.admin = b.o.DatabaseURL
		b.rep.Server = "DATABASE_URL"
		return nil
	}
	b.rep.Server = "private"
	dir, err := os.MkdirTemp("", "relay-bench-")
	if err != nil {
		return fmt.Errorf("bench: temp dir: %w", err)
	}
	_ = os.Chmod(dir, 0o755) // the server runs as another user when we are root
	b.tmpDir = dir
	settings := map[string]string{"shared_buffers": "512MB", "max_wal_size": "4GB"}
	// pg_stat_statements gives the per-statement cost breakdown; it ships with the
	// server (contrib), but a server refuses to start with a preload it cannot find.
	if statementsInstalled(b.o.PGBinDir) {
		settings["shared_preload_libraries"] = "pg_stat_statements"
		settings["pg_stat_statements.track"] = "top"
		b.stmtsPreloaded = true
	}
	b.progress("starting a private PostgreSQL (%s) in %s", map[bool]string{true: "fast: fsync off", false: "durable: fsync on"}[b.o.Fast], dir)
	srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: dir + "/pg", Fast: b.o.Fast, BinDir: b.o.PGBinDir, Settings: settings})
	if err != nil && b.stmtsPreloaded {
		// Installed where we looked but not loadable: go on without the breakdown.
		delete(settings, "shared_preload_libraries")
		delete(settings, "pg_stat_statements.track")
		b.stmtsPreloaded = false
		_ = os.RemoveAll(dir + "/pg")
		srv, err = pglocal.Start(ctx, pglocal.Options{DataDir: dir + "/pg", Fast: b.o.Fast, BinDir: b.o.PGBinDir, Settings: settings})
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	b.srv = srv
	b.admin = srv.URL("postgres")
	return nil
}

// statementsInstalled looks for pg_stat_statements' library beside the server binaries
// (Debian: /usr/lib/postgresql/N/{bin,lib}; a source build: PREFIX/{bin,lib}[/postgresql]).
func statementsInstalled(bin string) bool {
	if bin == "" {
		var err error
		if bin, err = pglocal.FindBinDir(); err != nil {
			return false
		}
	}
	for _, dir := range []string{"lib", "lib/postgresql", "lib64", "lib64/postgresql"} {
		if _, err := os.Stat(filepath.Join(bin, "..", dir, "pg_stat_statements.so")); err == nil {
			return true
		}
	}
	return false
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

// readServer reads the server's version and durability settings, whoever started it.
func (b *bench) readServer(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, b.admin)
	if err != nil {
		return fmt.Errorf("bench: connect: %w", err)
	}
	defer conn.Close(ctx)
	var fsync, fpw string
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'),
	        current_setting('synchronous_commit'), current_setting('full_page_writes')`).
		Scan(&b.rep.PostgreSQL, &fsync, &b.rep.SynchronousCommit, &fpw); err != nil {
		return fmt.Errorf("bench: read server settings: %w", err)
	}
	var backend int
	if err := conn.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&backend); err == nil {
		b.postmaster = findPostmaster(backend)
	}
	r := b.rep
	r.Fsync, r.FullPageWrites = fsync == "on", fpw == "on"
	r.Durable = r.Fsync && r.SynchronousCommit != "off"
	kind := "durable"
	if !r.Durable {
		kind = "fast"
	}
	r.Mode = fmt.Sprintf("%s (fsync %s, synchronous_commit %s, full_page_writes %s)", kind, fsync, r.SynchronousCommit, fpw)
	return nil
}

// shortMode is the mode as every printed figure carries it.
func (r *Report) shortMode() string {
	if r.Fsync {
		if r.SynchronousCommit == "off" {
			return "fsync on, synchronous_commit off"
		}
		return "fsync on"
	}
	return "fsync off"
}

// newDatabase creates a migrated scratch database and returns its URL, a pool, and a
// func that closes the pool and drops the database. Databases are copies of one
// migrated template, made on first use: a copy is one statement, a migration dozens.
func (b *bench) newDatabase(ctx context.Context) (string, *pgxpool.Pool, func(), error) {
	if err := b.ensureTemplate(ctx); err != nil {
		return "", nil, nil, err
	}
	name := randomName("relay_bench_")
	if err := b.adminExec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE "+pgx.Identifier{b.tmpl}.Sanitize()); err != nil {
		return "", nil, nil, fmt.Errorf("bench: create database: %w", err)
	}
	url := withDatabase(b.admin, name)
	drop := func() {
		_ = b.adminExec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
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

// ensureTemplate makes the migrated template database once.
func (b *bench) ensureTemplate(ctx context.Context) error {
	if b.tmpl != "" {
		return nil
	}
	name := randomName("relay_bench_tmpl_")
	if err := b.adminExec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return fmt.Errorf("bench: create database: %w", err)
	}
	if err := schema.Migrate(ctx, withDatabase(b.admin, name)); err != nil {
		_ = b.adminExec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		return err
	}
	b.tmpl = name
	return nil
}

// dropTemplate drops the template (at the end of the run: on a DATABASE_URL server it
// would outlive the bench).
func (b *bench) dropTemplate() {
	if b.tmpl != "" {
		_ = b.adminExec(context.Background(), "DROP DATABASE IF EXISTS "+pgx.Identifier{b.tmpl}.Sanitize()+" WITH (FORCE)")
		b.tmpl = ""
	}
}

// adminExec runs one statement on the admin connection's server. Copying a template
// fails while a backend of its migration is still exiting ("being accessed by other
// users"): that is retried.
func (b *bench) adminExec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, b.admin)
	if err != nil {
		return fmt.Errorf("bench: connect: %w", err)
	}
	defer conn.Close(context.Background())
	for attempt := 1; ; attempt++ {
		_, err := conn.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if err == nil || attempt >= 10 || !errors.As(err, &pgErr) || pgErr.Code != "55006" { // object_in_use
			return err
		}
		if err := pause(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

func randomName(prefix string) string {
	buf := make([]byte, 4)
	_, _ = rand.Read(buf)
	return prefix + hex.EncodeToString(buf)
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
	rc, err := newReceiver(0)
	if err != nil {
		return err
	}
	defer rc.close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	body := `{"post":{"current":{"id":"1","title":"x"},"previous":{}}}`
	var n atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(3 * time.Second)
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				resp, err := client.Post(rc.url, "application/json", strings.NewReader(body))
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
