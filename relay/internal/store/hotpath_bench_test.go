package store_test

// Micro-benchmarks of the statements on the hot path, against a real PostgreSQL:
// fan-out of a batch, a claim, and a batched record. Each reports ns per event or
// delivery, so they compare directly with the end-to-end figures of `relay bench`.

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/store"
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

// BenchmarkFanOut fans out batches of 100 events to 1 and 10 webhooks in one statement,
// leasing (as a relay does) up to 16 deliveries per webhook to itself.
func BenchmarkFanOut(b *testing.B) {
	for _, webhooks := range []int{1, 10} {
		b.Run(fmt.Sprintf("webhooks=%d", webhooks), func(b *testing.B) {
			db := benchSetup(b, webhooks)
			ctx := context.Background()
			var events int
			for b.Loop() {
				b.StopTimer()
				ids := emitN(b, db, 100)
				b.StartTimer()
				out, err := store.FanOut(ctx, db.Pool, store.FanOutRequest{EventID: ids[0], Events: 100,
					Owner: "bench", Lease: time.Minute, DefaultRoom: 16, Limit: 1000})
				if err != nil {
					b.Fatal(err)
				}
				if len(out.Covered) != 100 {
					b.Fatalf("fanned out %d events, want 100", len(out.Covered))
				}
				events += len(out.Covered)
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

func claim(b *testing.B, db *testutil.DB, n int) []store.Claimed {
	b.Helper()
	got, err := store.Claim(context.Background(), db.Pool, store.ClaimRequest{Owner: "bench", Limit: n, DefaultRoom: n, Lease: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	return got
}

// BenchmarkClaim claims 16 deliveries (the prefetch of one webhook at the default
// concurrency) from a backlog of 20,000.
func BenchmarkClaim(b *testing.B) {
	db := benchSetup(b, 1)
	pendingDeliveries(b, db, 20_000)
	var claimed int
	for b.Loop() {
		got := claim(b, db, 16)
		b.StopTimer()
		if _, err := store.Release(context.Background(), db.Pool, "bench", nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		claimed += len(got)
	}
	if claimed == 0 {
		b.Fatal("claimed nothing")
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(claimed), "ns/delivery")
}

// BenchmarkRecord writes batches of outcomes (attempt rows, delivery states, webhook
// last_triggered_*) in one statement, at the batch sizes seen under load.
func BenchmarkRecord(b *testing.B) {
	for _, size := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			db := benchSetup(b, 1)
			pendingDeliveries(b, db, 20_000)
			ctx := context.Background()
			var written int
			for b.Loop() {
				b.StopTimer()
				got := claim(b, db, size)
				if len(got) == 0 {
					b.Fatal("no deliveries left to record")
				}
				outs := make([]store.Outcome, len(got))
				for i, c := range got {
					outs[i] = store.Outcome{Lease: c.Lease, Status: store.Succeeded, Started: time.Now(), Duration: time.Millisecond, StatusCode: 200}
				}
				b.StartTimer()
				recorded, err := store.Record(ctx, db.Pool, "bench", outs, store.Next{})
				if err != nil {
					b.Fatal(err)
				}
				if len(recorded.IDs) != len(outs) {
					b.Fatalf("recorded %d of %d", len(recorded.IDs), len(outs))
				}
				written += len(outs)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(written), "ns/delivery")
		})
	}
}
