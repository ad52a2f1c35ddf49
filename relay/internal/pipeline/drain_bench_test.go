package pipeline_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/relaytest"
	"github.com/relayhq/relay/testutil"
)

// BenchmarkDrain drains backlogs of 5,000 events to 1 or 10 webhooks through a relay in
// this process, for profiling the pipeline (go test -bench Drain -cpuprofile cpu.out).
// `relay bench` is the end-to-end measurement; this one keeps the relay and its
// profile in one process.
func BenchmarkDrain(b *testing.B) {
	for _, webhooks := range []int{1, 10} {
		b.Run(fmt.Sprintf("webhooks=%d", webhooks), func(b *testing.B) {
			var got atomic.Int64
			rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				got.Add(1)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer rc.Close()
			db := testutil.NewDB(b)
			ctx := context.Background()
			for i := range webhooks {
				addWebhook(b, db, "post.published", fmt.Sprintf("%s/%d", rc.URL, i), "")
			}
			cfg := relaytest.Config(b)
			_, stop := relaytest.Start(b, db.Pool, cfg)
			defer stop()
			const events = 5000
			var delivered int64
			for b.Loop() {
				b.StopTimer()
				want := got.Load() + events*int64(webhooks)
				b.StartTimer()
				if _, err := db.Pool.Exec(ctx, `SELECT relay.emit('post.published', '{"post":{"current":{"id":"' || g || '"},"previous":{}}}')
					FROM generate_series(1, $1) g`, events); err != nil {
					b.Fatal(err)
				}
				deadline := time.Now().Add(2 * time.Minute)
				for got.Load() < want {
					if time.Now().After(deadline) {
						b.Fatalf("delivered %d of %d", got.Load(), want)
					}
					time.Sleep(time.Millisecond)
				}
				delivered += events * int64(webhooks)
			}
			b.ReportMetric(float64(delivered)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
