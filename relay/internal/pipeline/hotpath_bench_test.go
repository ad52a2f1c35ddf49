package pipeline

// Micro-benchmarks of the database statements on the hot path, against a real
// PostgreSQL: fan-out of a batch, a claim, and a batched result write. Each reports
// ns per event or delivery, so they compare directly with the end-to-end figures of
// `relay bench`.

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/testutil"
)

func benchSetup(b *testing.B, webhooks int) *testutil.DB {
	b.Helper()
	db := testutil.NewDB(b)
	for i := range webhooks {
		if _, err := db.Pool.Exec(context.Background(), `INSERT INTO relay.webhooks (event, target_url, created_at)
			VALUES ('post.published', $1, now() - interval '1 hour')`, fmt.Sprintf("http://127.0.0.1:1/%d", i)); err != nil {
			b.Fatal(err)
		}
	}
	return db
}

func emitN(b *testing.B, db *testutil.DB, n int) []string {
	b.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT relay.emit('post.published', jsonb_build_object('n', g)) FROM generate_series(1, $1) g`, n)
	if err != nil {
		b.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		b.Fatal(err)
	}
	return ids
}

// BenchmarkFanoutBatch fans out batches of 100 events to 1 and 10 webhooks in the way the
// subscriber does: one statement in a REPEATABLE READ transaction.
func BenchmarkFanoutBatch(b *testing.B) {
	for _, webhooks := range []int{1, 10} {
		b.Run(fmt.Sprintf("webhooks=%d", webhooks), func(b *testing.B) {
			db := benchSetup(b, webhooks)
			beginner := wsql.BeginnerFromPgx(db.Pool)
			ctx := context.Background()
			var events int
			for b.Loop() {
				b.StopTimer()
				ids := emitN(b, db, 100)
				b.StartTimer()
				tx, err := beginner.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
				if err != nil {
					b.Fatal(err)
				}
				f := &fanouter{batch: 100}
				rows, err := tx.QueryContext(ctx, fanoutSQL, ids[0], f.batch)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for rows.Next() {
					n++
				}
				_ = rows.Close()
				if err := tx.Commit(); err != nil {
					b.Fatal(err)
				}
				if n != 100 {
					b.Fatalf("fanned out %d events, want 100", n)
				}
				events += n
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(events), "ns/event")
		})
	}
}

func pendingDeliveries(b *testing.B, db *testutil.DB, n int) {
	b.Helper()
	emitN(b, db, n)
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO relay.deliveries (event_id, webhook_id, next_attempt_at)
		SELECT o."uuid"::uuid, w.id, now() - interval '1 second' FROM relay.outbox o, relay.webhooks w`); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkClaim claims 16 deliveries (the prefetch of one webhook at the default
// concurrency) from a backlog of 20,000.
func BenchmarkClaim(b *testing.B) {
	db := benchSetup(b, 1)
	pendingDeliveries(b, db, 20_000)
	cfg := DefaultConfig()
	s := newClaimSubscriber(db.Pool, cfg, "bench", nil, zerolog.Nop())
	ctx := context.Background()
	var claimedN int
	for b.Loop() {
		n, err := s.claim(ctx, 16)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.releaseQueued()
		s.hooks = map[string]*hook{}
		b.StartTimer()
		claimedN += n
	}
	if claimedN == 0 {
		b.Fatal("claimed nothing")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(claimedN), "ns/delivery")
}

// BenchmarkRecord writes batches of results (attempt rows, delivery states, webhook
// last_triggered_*) in one statement, at the batch sizes seen under load.
func BenchmarkRecord(b *testing.B) {
	for _, size := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			db := benchSetup(b, 1)
			pendingDeliveries(b, db, 20_000)
			cfg := DefaultConfig()
			cfg.WebhookConcurrency = size
			s := newClaimSubscriber(db.Pool, cfg, "bench", nil, zerolog.Nop())
			rec := newRecorder(db.Pool, "bench", zerolog.Nop())
			ctx := context.Background()
			var written int
			for b.Loop() {
				b.StopTimer()
				s.hooks = map[string]*hook{}
				s.queued = 0
				if _, err := s.claim(ctx, size); err != nil {
					b.Fatal(err)
				}
				var batch []*pending
				for _, h := range s.hooks {
					for _, c := range h.queued {
						batch = append(batch, &pending{res: result{Delivery: c, Status: statusSucceeded,
							Attempt: attemptResult{Started: time.Now(), Duration: time.Millisecond, StatusCode: 200}}})
					}
				}
				if len(batch) == 0 {
					b.Fatal("no deliveries left to record")
				}
				b.StartTimer()
				got, err := rec.write(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != len(batch) {
					b.Fatalf("recorded %d of %d", len(got), len(batch))
				}
				written += len(batch)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(written), "ns/delivery")
		})
	}
}
