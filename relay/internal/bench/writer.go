package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/outbox"
)

// WriterCost is scenario (w): what emitting an event costs the CMS's own transaction.
type WriterCost struct {
	Name string `json:"name"`
	Mode string `json:"mode"`
	// Note says what runs meanwhile: no relay, so the figures are the CMS's alone.
	Note    string         `json:"note"`
	Rows    int            `json:"rows"`
	RunFor  time.Duration  `json:"run_ns"`
	Rounds  int            `json:"rounds"`
	Results []WriterResult `json:"results"`
	// Emitted counts the committed emitting transactions, Stored the outbox rows after:
	// every committed emit is one event, none lost, none twice.
	Emitted int64  `json:"events_emitted"`
	Stored  int64  `json:"events_stored"`
	OK      bool   `json:"ok"`
	Failure string `json:"failure,omitempty"`
}

// WriterResult is one way of writing, at one client count: transactions per second
// without and with the event, per round, and medians.
type WriterResult struct {
	Variant     string    `json:"variant"` // "tx" or "batch"
	Description string    `json:"description"`
	Clients     int       `json:"clients"`
	PlainTPS    []float64 `json:"plain_tps"`
	EmitTPS     []float64 `json:"emit_tps"`
	Ratios      []float64 `json:"ratios"` // emit / plain, per round
	PlainMedian float64   `json:"plain_tps_median"`
	EmitMedian  float64   `json:"emit_tps_median"`
	RatioMedian float64   `json:"ratio_median"`
}

const (
	// A Ghost-like posts row, about 2 KB; the UPDATE touches no indexed column, as an
	// edit of a title does not.
	postsDDL = `CREATE TABLE cms_posts (
    id         integer PRIMARY KEY,
    uuid       uuid NOT NULL DEFAULT gen_random_uuid(),
    slug       text NOT NULL UNIQUE,
    title      text NOT NULL,
    status     text NOT NULL,
    html       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)`
	postsFill = `INSERT INTO cms_posts (id, slug, title, status, html)
SELECT g, 'post-' || g, 'Post ' || g, 'published', repeat('<p>Lorem ipsum dolor sit amet.</p>', 60)
  FROM generate_series(1, $1::int) AS g`
	postUpdate = `UPDATE cms_posts SET title = $1, updated_at = now() WHERE id = $2`
)

// writerVariant is one way a Go CMS writes its transaction with pgx.
type writerVariant struct {
	name, desc string
	tx         func(ctx context.Context, tx pgx.Tx, id int, emit bool) error
}

var writerVariants = []writerVariant{
	{"tx", "pgx.BeginFunc: tx.Exec(UPDATE) [+ outbox.Emit], commit", func(ctx context.Context, tx pgx.Tx, id int, emit bool) error {
		if _, err := tx.Exec(ctx, postUpdate, fmt.Sprintf("Post %d, edited", id), id); err != nil {
			return err
		}
		if emit {
			_, err := outbox.Emit(ctx, tx, "post.published", payload(id))
			return err
		}
		return nil
	}},
	{"batch", "pgx.BeginFunc: tx.SendBatch(UPDATE [+ outbox.QueueEmit]), commit", func(ctx context.Context, tx pgx.Tx, id int, emit bool) error {
		batch := &pgx.Batch{}
		batch.Queue(postUpdate, fmt.Sprintf("Post %d, edited", id), id)
		if emit {
			var eventID string
			if err := outbox.QueueEmit(batch, "post.published", payload(id), &eventID); err != nil {
				return err
			}
		}
		return tx.SendBatch(ctx, batch).Close()
	}},
}

func (b *bench) writerStep(ctx context.Context) ([]Scenario, error) {
	w, err := b.writer(ctx)
	if err == nil {
		b.rep.Writer = w
	}
	return nil, err
}

// writer is scenario (w): a CMS transaction (UPDATE of a random one of WriterRows posts)
// against the same transaction with one relay event, per variant and client count,
// plain and emitting runs alternating (their order swapped every round) so that the
// machine's noise falls on both.
func (b *bench) writer(ctx context.Context) (*WriterCost, error) {
	o := b.o
	w := &WriterCost{
		Name: fmt.Sprintf("w: writer cost, UPDATE of 1 of %d posts ± one relay event, %d rounds × %s per run", o.WriterRows, o.WriterRounds, o.WriterFor),
		Mode: b.rep.shortMode(),
		Note: "no relay process runs: events accumulate in relay.outbox, and the CMS has the machine to itself",
		Rows: o.WriterRows, RunFor: o.WriterFor, Rounds: o.WriterRounds,
	}
	_, pool, drop, err := b.newDatabase(ctx)
	if err != nil {
		return w, err
	}
	defer drop()
	if _, err := pool.Exec(ctx, postsDDL); err != nil {
		return w, fmt.Errorf("bench: writer: %w", err)
	}
	if _, err := pool.Exec(ctx, postsFill, max(o.WriterRows, 1)); err != nil {
		return w, fmt.Errorf("bench: writer: %w", err)
	}
	if _, err := pool.Exec(ctx, `VACUUM ANALYZE cms_posts`); err != nil {
		return w, fmt.Errorf("bench: writer: %w", err)
	}
	maxClients := slices.Max(o.WriterClients)
	// Every client its own connection, opened before the clock starts.
	if maxClients > int(pool.Config().MaxConns) {
		pool.Close()
		cfg := pool.Config()
		cfg.MaxConns = int32(maxClients)
		if pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
			return w, fmt.Errorf("bench: writer: %w", err)
		}
		defer pool.Close()
	}
	run := func(v writerVariant, emit bool, clients int, d time.Duration) (float64, error) {
		n, took, err := writerRun(ctx, pool, v, emit, clients, o.WriterRows, d)
		if emit {
			w.Emitted += n
		}
		return float64(n) / took.Seconds(), err
	}
	// Warm-up: connections, plans, the table's pages in shared buffers.
	for _, v := range writerVariants {
		for _, emit := range []bool{false, true} {
			b.progress("%s: warming up", w.Name)
			if _, err := run(v, emit, maxClients, min(o.WriterFor, 500*time.Millisecond)); err != nil {
				return w, err
			}
		}
	}
	for _, v := range writerVariants {
		for _, c := range o.WriterClients {
			w.Results = append(w.Results, WriterResult{Variant: v.name, Description: v.desc, Clients: c})
		}
	}
	for r := range o.WriterRounds {
		i := 0
		for _, v := range writerVariants {
			for _, c := range o.WriterClients {
				res := &w.Results[i]
				i++
				order := []bool{false, true}
				if r%2 == 1 {
					order = []bool{true, false}
				}
				for _, emit := range order {
					b.progress("%s: round %d/%d, %s, %d clients, %s", w.Name, r+1, o.WriterRounds, v.name, c, map[bool]string{false: "plain", true: "with emit"}[emit])
					tps, err := run(v, emit, c, o.WriterFor)
					if err != nil {
						return w, err
					}
					if emit {
						res.EmitTPS = append(res.EmitTPS, tps)
					} else {
						res.PlainTPS = append(res.PlainTPS, tps)
					}
				}
				res.Ratios = append(res.Ratios, res.EmitTPS[r]/res.PlainTPS[r])
			}
		}
	}
	for i := range w.Results {
		res := &w.Results[i]
		res.PlainMedian, res.EmitMedian, res.RatioMedian = median(res.PlainTPS), median(res.EmitTPS), median(res.Ratios)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM relay.outbox`).Scan(&w.Stored); err != nil {
		return w, fmt.Errorf("bench: writer: %w", err)
	}
	if w.Stored != w.Emitted {
		w.Failure = fmt.Sprintf("%d emitting transactions committed, %d events in the outbox", w.Emitted, w.Stored)
	}
	w.OK = w.Failure == ""
	return w, nil
}

// writerRun runs clients connections of back-to-back transactions for d and returns
// how many committed, and in how long (the last ones end after d).
func writerRun(ctx context.Context, pool *pgxpool.Pool, v writerVariant, emit bool, clients, rows int, d time.Duration) (int64, time.Duration, error) {
	var n atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, clients)
	start := time.Now()
	deadline := start.Add(d)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				id := 1 + rand.IntN(max(rows, 1))
				if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return v.tx(ctx, tx, id, emit) }); err != nil {
					errc <- fmt.Errorf("bench: writer %s: %w", v.name, err)
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	close(errc)
	if err := <-errc; err != nil {
		return n.Load(), took, err
	}
	return n.Load(), took, ctx.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
