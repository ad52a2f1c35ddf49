package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/relay/internal/pipeline"
)

// fixture is a scratch database with webhooks pointing at a fresh receiver.
type fixture struct {
	url  string
	pool *pgxpool.Pool
	rc   *receiver
	drop func()
	// stmtsNote is "" when pg_stat_statements is readable in the database, else why not.
	stmtsNote string
	// sizes0 are the relay's tables before any event: the drain's sizes are what the
	// events and their deliveries add.
	sizes0 map[string]int64
}

func (f *fixture) close() { f.rc.close(); f.drop() }

// setup makes a scratch database with webhooks webhooks (paths /0, /1, ... of one
// receiver answering after delay), all subscribed to post.published.
func (b *bench) setup(ctx context.Context, webhooks int, delay time.Duration) (*fixture, error) {
	url, pool, drop, err := b.newDatabase(ctx)
	if err != nil {
		return nil, err
	}
	rc, err := newReceiver(delay)
	if err != nil {
		drop()
		return nil, err
	}
	f := &fixture{url: url, pool: pool, rc: rc, drop: drop}
	if webhooks > 0 {
		if _, err := pool.Exec(ctx, `INSERT INTO relay.webhooks (event, target_url)
		        SELECT 'post.published', $1 || '/' || g FROM generate_series(0, $2::int - 1) AS g`, rc.url, webhooks); err != nil {
			f.close()
			return nil, fmt.Errorf("bench: add webhooks: %w", err)
		}
	}
	// Vacuumed once empty, so that the free-space and visibility maps the settle's
	// VACUUM creates do not count as growth of tables the run never writes.
	if _, err := pool.Exec(ctx, "VACUUM"); err != nil {
		f.close()
		return nil, fmt.Errorf("bench: vacuum: %w", err)
	}
	if f.sizes0, err = tableSizes(ctx, pool); err != nil {
		f.close()
		return nil, err
	}
	f.stmtsNote = b.enableStatements(ctx, pool)
	if f.stmtsNote == "" {
		b.rep.PGStatStatements = true
	} else {
		b.rep.PGStatStatementsNote = f.stmtsNote
	}
	return f, nil
}

func (b *bench) scenario(id, name string, events, webhooks int) Scenario {
	return Scenario{ID: id, Name: name, Mode: b.rep.shortMode(), Events: events, Webhooks: webhooks, Expected: events * webhooks}
}

// payload is the body of event i in (a): a Ghost post.published event, ~140 bytes.
func payload(i int) []byte {
	return fmt.Appendf(nil, `{"post":{"current":{"id":"%024d","title":"Benchmark post %d","status":"published"},"previous":{"status":"draft"}}}`, i, i)
}

// The backlog is written set-based (a million events in seconds, not minutes), with
// relay.emit, the function every CMS calls: the events are what a CMS writes.
const (
	writeSQL = `SELECT count(relay.emit('post.published', format(
    '{"post":{"current":{"id":"%s","title":"Benchmark post %s","status":"published"},"previous":{"status":"draft"}}}',
    lpad(g::text, 24, '0'), g)))
  FROM generate_series($1::int, $2::int) AS g`
	// sizedBody is the body of (g) before padding: sizedWriteSQL pads "html" to the size.
	sizedBody     = `{"post":{"current":{"id":"%s","html":"%s"},"previous":{}}}`
	sizedWriteSQL = `SELECT count(relay.emit('post.published', format(
    '` + sizedBody + `', lpad(g::text, 24, '0'), repeat('x', $3::int))))
  FROM generate_series($1::int, $2::int) AS g`
)

// maxBody is relay.max_payload_bytes(): the largest body relay.emit takes.
const maxBody = 1 << 20

// sizedOverhead is the size of a (g) body around its padding.
var sizedOverhead = len(fmt.Sprintf(sizedBody, strings.Repeat("0", 24), ""))

// writeEvents emits n events (bodies of body bytes; 0: payload's ~140) in transactions
// of up to 10,000 events (or 16 MiB), two at a time, and returns how long it took.
func (b *bench) writeEvents(ctx context.Context, pool *pgxpool.Pool, name string, n, body int) (time.Duration, error) {
	chunk := 10_000
	if body > 0 {
		if body < sizedOverhead {
			return 0, fmt.Errorf("bench: body size %d is below the %d bytes of its JSON", body, sizedOverhead)
		}
		chunk = max(1, min(chunk, (16<<20)/body))
	}
	start := time.Now()
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	for from := 1; from <= n; from += chunk {
		to := min(from+chunk-1, n)
		g.Go(func() error {
			var err error
			if body > 0 {
				_, err = pool.Exec(gctx, sizedWriteSQL, from, to, body-sizedOverhead)
			} else {
				_, err = pool.Exec(gctx, writeSQL, from, to)
			}
			if err != nil {
				return fmt.Errorf("bench: write the backlog: %w", err)
			}
			b.progress("%s: writing the backlog %d/%d", name, done.Add(int64(to-from+1)), n)
			return nil
		})
	}
	err := g.Wait()
	return time.Since(start), err
}

// meter is what a delivering scenario reads at its start.
type meter struct {
	p     *relayProc
	start time.Time
	cpu0  float64
	pg0   float64
	stmts stmtSnapshot
}

// settle starts every scenario from a quiet database, as the River baseline does: the
// backlog vacuumed and analysed, and its pages checkpointed (CHECKPOINT needs a
// superuser or pg_checkpoint; without it the run goes on unsettled).
func settle(ctx context.Context, pool *pgxpool.Pool) error {
	if _, err := pool.Exec(ctx, "VACUUM ANALYZE"); err != nil {
		return fmt.Errorf("bench: vacuum: %w", err)
	}
	_, _ = pool.Exec(ctx, "CHECKPOINT")
	return nil
}

// begin snapshots the database's statements and sizes and starts the relay.
func (b *bench) begin(ctx context.Context, f *fixture, env []string) (*meter, error) {
	m := &meter{}
	if err := settle(ctx, f.pool); err != nil {
		return nil, err
	}
	var err error
	if f.stmtsNote == "" {
		if m.stmts, err = snapshotStatements(ctx, f.pool); err != nil {
			return nil, err
		}
	}
	if b.postmaster != 0 {
		m.pg0 = postmasterCPU(b.postmaster)
	}
	if m.p, err = b.startRelay(ctx, f.url, env...); err != nil {
		return nil, err
	}
	m.cpu0 = m.p.cpu()
	m.start = time.Now()
	return m, nil
}

// await waits for want deliveries, the relay's exit, the drain timeout or ctx; only ctx
// is an error, the others are the scenario's failure.
func (b *bench) await(ctx context.Context, res *Scenario, m *meter, rc *receiver, want int) error {
	deadline := m.start.Add(b.o.DrainTimeout)
	for rc.count.Load() < int64(want) {
		if exited, err := m.p.exited(); exited {
			res.Failure = fmt.Sprintf("relay exited: %v: %s", err, tail(m.p.output(), 2000))
			return nil
		}
		if time.Now().After(deadline) {
			res.Failure = fmt.Sprintf("timed out after %s with %d of %d deliveries", b.o.DrainTimeout, rc.count.Load(), want)
			return nil
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return err
		}
		n := rc.count.Load()
		b.progress("%s: %d/%d deliveries, %.0f/s", res.Name, n, want, float64(n)/time.Since(m.start).Seconds())
	}
	return nil
}

// finish reads the figures, stops the relay (it records what it has in flight), reads
// the statements and sizes, and checks that every expected delivery came exactly once.
func (b *bench) finish(ctx context.Context, res *Scenario, m *meter, f *fixture) error {
	rc := f.rc
	last := rc.last.Load()
	if last == 0 {
		last = time.Now().UnixNano()
	}
	// The relay may deliver before it answers /readyz: a drain starts at whichever came
	// first.
	start := m.start.UnixNano()
	if first := rc.first.Load(); first != 0 && first < start {
		start = first
	}
	res.Elapsed = time.Duration(last - start)
	res.Deliveries = int(rc.count.Load())
	if res.Elapsed > 0 {
		res.PerSecond = float64(res.Deliveries) / res.Elapsed.Seconds()
	}
	res.RelayCPUSeconds = max(0, m.p.cpu()-m.cpu0)
	res.RelayCPUPercent = 100 * res.RelayCPUSeconds / max(res.Elapsed.Seconds(), 1e-9)
	res.PeakRSSMiB = m.p.peakRSS()
	if b.postmaster != 0 {
		pg := max(0, postmasterCPU(b.postmaster)-m.pg0)
		res.PGCPUSeconds = &pg
		if res.Deliveries > 0 {
			us := 1e6 * pg / float64(res.Deliveries)
			res.PGCPUMicrosPerDelivery = &us
		}
	}
	if res.Deliveries > 0 {
		res.RelayCPUMicrosPerDelivery = 1e6 * res.RelayCPUSeconds / float64(res.Deliveries)
	}
	m.p.stop()
	if f.stmtsNote == "" {
		after, err := snapshotStatements(ctx, f.pool)
		if err != nil {
			return err
		}
		res.breakdown(m.stmts, after)
	} else {
		res.StatementsNote = f.stmtsNote
	}
	after, err := tableSizes(ctx, f.pool)
	if err != nil {
		return err
	}
	res.sizes(f.sizes0, after)
	res.check(rc)
	return nil
}

// check compares what the receiver got with what the scenario expects.
func (s *Scenario) check(rc *receiver) {
	distinct, dups := rc.tally()
	s.Duplicates = dups
	s.Lost = max(0, s.Expected-distinct)
	switch {
	case s.Failure != "":
	case distinct > s.Expected:
		s.Failure = fmt.Sprintf("%d deliveries of events or webhooks that do not exist", distinct-s.Expected)
	case s.Lost > 0:
		s.Failure = fmt.Sprintf("%d of %d deliveries never arrived", s.Lost, s.Expected)
	case dups > 0:
		s.Failure = fmt.Sprintf("%d duplicate deliveries", dups)
	}
	s.OK = s.Failure == ""
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// steadyWriters is how many connections (a) writes from, as the River baseline does.
const steadyWriters = 8

// steady is scenario (a): a steady rate of single-event transactions, one webhook.
func (b *bench) steady(ctx context.Context) (Scenario, error) {
	total := int(float64(b.o.Rate) * b.o.SteadyFor.Seconds())
	res := b.scenario(ScenarioSteady, fmt.Sprintf("a: steady %d events/s for %s, 1 webhook", b.o.Rate, b.o.SteadyFor), total, 1)
	f, err := b.setup(ctx, 1, 0)
	if err != nil {
		return res, err
	}
	defer f.close()
	m, err := b.begin(ctx, f, nil)
	if err != nil {
		return res, err
	}
	defer m.p.stop()
	rc := f.rc
	if res.EmitPerSecond, err = b.emitAtRate(ctx, f.pool, rc, "post.published", total, m.start, res.Name); err != nil {
		return res, err
	}
	if err := b.await(ctx, &res, m, rc, total); err != nil {
		return res, err
	}
	if err := b.finish(ctx, &res, m, f); err != nil {
		return res, err
	}
	res.Latency = rc.latency()
	return res, nil
}

// emitAtRate commits total single-event transactions of event, at b.o.Rate from start,
// each recorded in rc for its commit-to-receipt latency, and returns the rate reached.
// A CMS writes from many connections: with fsync on, one connection's commits alone
// could not keep up with the rate. Each event is handed out at its due time to whichever
// writer is free.
func (b *bench) emitAtRate(ctx context.Context, pool *pgxpool.Pool, rc *receiver, event string, total int, start time.Time, name string) (float64, error) {
	due := make(chan int, total)
	g, gctx := errgroup.WithContext(ctx)
	var lastCommit atomic.Int64
	for range steadyWriters {
		g.Go(func() error {
			for i := range due {
				tx, err := pool.Begin(gctx)
				if err != nil {
					return fmt.Errorf("bench: %w", err)
				}
				id, err := outbox.Emit(gctx, tx, event, payload(i))
				if err != nil {
					_ = tx.Rollback(gctx)
					return err
				}
				if err := tx.Commit(gctx); err != nil {
					return fmt.Errorf("bench: commit: %w", err)
				}
				now := time.Now()
				rc.committed.Store(id, now)
				lastCommit.Store(now.UnixNano())
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(due)
		for i := range total {
			at := start.Add(time.Duration(float64(i) / float64(b.o.Rate) * float64(time.Second)))
			if err := pause(gctx, time.Until(at)); err != nil {
				return err
			}
			due <- i
			if i%100 == 0 {
				b.progress("%s: %d/%d events, %d delivered", name, i, total, rc.count.Load())
			}
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return 0, err
	}
	if took := time.Duration(lastCommit.Load() - start.UnixNano()); took > 0 {
		return float64(total) / took.Seconds(), nil
	}
	return 0, nil
}

// drainSpec is a backlog written before the relay starts, then drained.
type drainSpec struct {
	id, name         string
	events, webhooks int
	body             int           // body bytes; 0: payload's
	delay            time.Duration // the receiver's, per request
	env              []string      // extra relay environment
}

func (b *bench) drain(ctx context.Context, sp drainSpec) (Scenario, error) {
	res := b.scenario(sp.id, sp.name, sp.events, sp.webhooks)
	res.BodyBytes, res.ReceiverDelay, res.RelayEnv = sp.body, sp.delay, sp.env
	f, err := b.setup(ctx, sp.webhooks, sp.delay)
	if err != nil {
		return res, err
	}
	defer f.close()
	if res.WriteElapsed, err = b.writeEvents(ctx, f.pool, sp.name, sp.events, sp.body); err != nil {
		return res, err
	}
	res.WritePerSecond = float64(sp.events) / res.WriteElapsed.Seconds()
	m, err := b.begin(ctx, f, sp.env)
	if err != nil {
		return res, err
	}
	defer m.p.stop()
	if err := b.await(ctx, &res, m, f.rc, res.Expected); err != nil {
		return res, err
	}
	if err := b.finish(ctx, &res, m, f); err != nil {
		return res, err
	}
	if sp.body > 0 && res.Elapsed > 0 {
		res.MBPerSecond = float64(sp.body) * float64(res.Deliveries) / res.Elapsed.Seconds() / 1e6
	}
	return res, nil
}

// backlog is scenario (b): a backlog of events drained to one webhook.
func (b *bench) backlog(ctx context.Context) (Scenario, error) {
	res, err := b.drain(ctx, drainSpec{id: ScenarioBacklog, name: fmt.Sprintf("b: drain a backlog of %d events, 1 webhook", b.o.Backlog),
		events: b.o.Backlog, webhooks: 1})
	if err == nil && res.OK {
		b.instantRate = res.PerSecond
	}
	return res, err
}

// fanout is scenario (c): events fanned out to several webhooks.
func (b *bench) fanout(ctx context.Context) (Scenario, error) {
	return b.drain(ctx, drainSpec{id: ScenarioFanout, name: fmt.Sprintf("c: %d events fanned out to %d webhooks", b.o.FanoutEvents, b.o.Webhooks),
		events: b.o.FanoutEvents, webhooks: b.o.Webhooks})
}

// idle is scenario (d): a relay with nothing to do.
func (b *bench) idle(ctx context.Context) (Scenario, error) {
	res := b.scenario(ScenarioIdle, fmt.Sprintf("d: idle for %s", b.o.IdleFor), 0, 1)
	f, err := b.setup(ctx, 1, 0)
	if err != nil {
		return res, err
	}
	defer f.close()
	p, err := b.startRelay(ctx, f.url)
	if err != nil {
		return res, err
	}
	defer p.stop()
	if err := pause(ctx, 2*time.Second); err != nil { // start-up work is not idling
		return res, err
	}
	cpu0 := p.cpu()
	start := time.Now()
	for time.Since(start) < b.o.IdleFor {
		b.progress("%s: %.0fs", res.Name, time.Since(start).Seconds())
		if err := pause(ctx, time.Second); err != nil {
			return res, err
		}
	}
	res.Elapsed = time.Since(start)
	res.RelayCPUSeconds = p.cpu() - cpu0
	res.RelayCPUPercent = 100 * res.RelayCPUSeconds / res.Elapsed.Seconds()
	res.PeakRSSMiB = p.peakRSS()
	if exited, err := p.exited(); exited {
		res.Failure = fmt.Sprintf("relay exited: %v: %s", err, tail(p.output(), 2000))
	}
	res.check(f.rc)
	if n := f.rc.count.Load(); n > 0 && res.OK {
		res.OK, res.Failure = false, fmt.Sprintf("%d deliveries with no event", n)
	}
	return res, nil
}

// sizes is scenario (e): backlogs of growing size drained to one webhook.
func (b *bench) sizes(ctx context.Context) ([]Scenario, error) {
	var out []Scenario
	for _, n := range b.o.BacklogSizes {
		res, err := b.drain(ctx, drainSpec{id: ScenarioSizes, name: fmt.Sprintf("e: drain a backlog of %d events, 1 webhook", n),
			events: n, webhooks: 1})
		out = append(out, res)
		if err != nil {
			return out, err
		}
		if b.instantRate == 0 && res.OK {
			b.instantRate = res.PerSecond
		}
	}
	return out, nil
}

// widths is scenario (f): the same events to more and more webhooks each.
func (b *bench) widths(ctx context.Context) ([]Scenario, error) {
	var out []Scenario
	for _, w := range b.o.Widths {
		res, err := b.drain(ctx, drainSpec{id: ScenarioWidths, name: fmt.Sprintf("f: %d events × %d webhooks each", b.o.WidthEvents, w),
			events: b.o.WidthEvents, webhooks: w})
		out = append(out, res)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// bodies is scenario (g): backlogs of bigger and bigger bodies, one webhook.
func (b *bench) bodies(ctx context.Context) ([]Scenario, error) {
	var out []Scenario
	for _, size := range b.o.BodySizes {
		n := b.o.BodyEvents
		if b.o.BodyBudget > 0 {
			n = max(1, min(n, b.o.BodyBudget/size))
		}
		res, err := b.drain(ctx, drainSpec{id: ScenarioBodies, name: fmt.Sprintf("g: %d events of %s, 1 webhook", n, byteSize(size)),
			events: n, webhooks: 1, body: size})
		out = append(out, res)
		if err != nil {
			return out, err
		}
	}
	return out, nil
}

// slowReceivers is scenario (h): one webhook whose receiver takes its time, with the
// relay's concurrency as the user has it (defaults, or the environment and
// --relay-env), and, when that is short of what an instant receiver gets, once more with
// the concurrency that rate takes.
func (b *bench) slowReceivers(ctx context.Context) ([]Scenario, error) {
	var out []Scenario
	n := b.o.ReceiverEvents
	if b.instantRate == 0 {
		// Nothing in this run measured an instant receiver: measure one, as the target.
		res, err := b.drain(ctx, drainSpec{id: ScenarioReceiver, name: fmt.Sprintf("h: %d events, 1 instant receiver (the reference)", n),
			events: n, webhooks: 1})
		out = append(out, res)
		if err != nil {
			return out, err
		}
		if res.OK {
			b.instantRate = res.PerSecond
		}
	}
	defaults := pipeline.DefaultConfig()
	conc := b.relaySetting("RELAY_WEBHOOK_CONCURRENCY", defaults.WebhookConcurrency)
	workers := b.relaySetting("RELAY_WORKERS", defaults.Workers)
	for _, d := range b.o.ReceiverDelays {
		res, err := b.drain(ctx, drainSpec{id: ScenarioReceiver, name: fmt.Sprintf("h: %d events, 1 receiver taking %s per request", n, d),
			events: n, webhooks: 1, delay: d})
		if err != nil {
			return append(out, res), err
		}
		adv := &Concurrency{WebhookConcurrency: conc, Workers: workers, TargetPerSecond: b.instantRate}
		adv.CeilingPerSecond = float64(min(conc, workers)) / d.Seconds()
		// Little's law: requests in flight = rate × time each one takes; 10% headroom for
		// the relay's own time per request.
		adv.Needed = min(10_000, int(math.Ceil(1.1*b.instantRate*d.Seconds())))
		adv.Setting = fmt.Sprintf("RELAY_WEBHOOK_CONCURRENCY=%d RELAY_WORKERS=%d (per relay process; workers ≥ concurrency × webhooks busy at once)",
			max(conc, adv.Needed), max(workers, adv.Needed))
		res.Advice = adv
		out = append(out, res)
		if adv.Needed <= conc && adv.Needed <= workers || b.instantRate == 0 {
			continue
		}
		env := []string{"RELAY_WEBHOOK_CONCURRENCY=" + strconv.Itoa(max(conc, adv.Needed)), "RELAY_WORKERS=" + strconv.Itoa(max(workers, adv.Needed))}
		v, err := b.drain(ctx, drainSpec{id: ScenarioReceiver, name: fmt.Sprintf("h: %d events, 1 receiver taking %s per request, %s", n, d, strings.Join(env, " ")),
			events: n, webhooks: 1, delay: d, env: env})
		out = append(out, v)
		if err != nil {
			return out, err
		}
		if v.OK {
			adv.VerifiedPerSecond = v.PerSecond
		}
	}
	return out, nil
}

// relaySetting is the relay's integer setting name as the relay process will see it:
// the bench's environment, then --relay-env (the later wins), else def.
func (b *bench) relaySetting(name string, def int) int {
	v := def
	for _, kv := range append([]string{name + "=" + os.Getenv(name)}, b.o.RelayEnv...) {
		if s, ok := strings.CutPrefix(kv, name+"="); ok && s != "" {
			if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
				v = n
			}
		}
	}
	return v
}

// byteSize prints a size the way the flags take it.
func byteSize(n int) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}

// ParseByteSize reads 200, 200B, 8KiB, 8K, 1MiB, 1M (binary units).
func ParseByteSize(s string) (int, error) {
	t := strings.TrimSpace(s)
	mult := 1
	for _, u := range []struct {
		suffix string
		mult   int
	}{{"MiB", 1 << 20}, {"KiB", 1 << 10}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.Atoi(t)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("invalid size %q (examples: 200, 8KiB, 1MiB)", s)
	}
	return n * mult, nil
}
