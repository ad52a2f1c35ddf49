package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/relayhq/relay/relay/internal/store"
)

// ReplayFigures are what (r) measures: live latency to another webhook without and
// with a replay running, and the replay's own pace.
type ReplayFigures struct {
	// Baseline is the live webhook's commit-to-receipt latency with no replay; During,
	// the same load's while the replay runs.
	Baseline *Latency `json:"baseline_latency"`
	During   *Latency `json:"during_replay_latency"`
	// P50Ratio and P99Ratio are During over Baseline.
	P50Ratio float64 `json:"p50_ratio"`
	P99Ratio float64 `json:"p99_ratio"`
	// RanThrough says the replay was still running when the live load ended, so that
	// the whole "during" load met it.
	RanThrough bool `json:"replay_ran_through_the_live_load"`
	// ReplayPerSecond is the replay's deliveries per second, from its start to its last.
	ReplayPerSecond float64       `json:"replay_deliveries_per_second"`
	ReplayElapsed   time.Duration `json:"replay_elapsed_ns"`
}

// replayScenario is (r): a kept log of ReplayEvents events that a webhook created after
// them replays, while another webhook gets live events at --rate. The live load runs
// twice, for --steady-for each: before the replay (the baseline) and while it runs.
func (b *bench) replayScenario(ctx context.Context) (Scenario, error) {
	live := int(float64(b.o.Rate) * b.o.SteadyFor.Seconds())
	res := b.scenario(ScenarioReplay, fmt.Sprintf("r: replay %d kept events to a new webhook while another gets %d events/s", b.o.ReplayEvents, b.o.Rate),
		b.o.ReplayEvents+2*live, 2)
	res.Expected = b.o.ReplayEvents + 2*live
	f, err := b.setup(ctx, 0, 0)
	if err != nil {
		return res, err
	}
	defer f.close()
	if res.WriteElapsed, err = b.writeEvents(ctx, f.pool, res.Name, b.o.ReplayEvents, 0); err != nil {
		return res, err
	}
	res.WritePerSecond = float64(b.o.ReplayEvents) / res.WriteElapsed.Seconds()
	// As if a relay had read the log before the webhooks existed: the consumer group at
	// its end, and the webhooks created after it (so no fan-out delivers it).
	if _, err := f.pool.Exec(ctx, `
		INSERT INTO relay.outbox_offsets (consumer_group, offset_acked, last_processed_transaction_id)
		SELECT $1, "offset", transaction_id FROM relay.outbox ORDER BY transaction_id DESC, "offset" DESC LIMIT 1`, store.ConsumerGroup); err != nil {
		return res, fmt.Errorf("bench: position the consumer group: %w", err)
	}
	var replayed string
	if err := f.pool.QueryRow(ctx, `INSERT INTO relay.webhooks (event, target_url) VALUES
		('post.published', $1 || '/replayed'), ('page.published', $1 || '/live') RETURNING id`, f.rc.url).Scan(&replayed); err != nil {
		return res, fmt.Errorf("bench: add webhooks: %w", err)
	}
	m, err := b.begin(ctx, f, nil)
	if err != nil {
		return res, err
	}
	defer m.p.stop()
	rc := f.rc
	fig := &ReplayFigures{}
	res.Replay = fig

	// The baseline: live events alone.
	if _, err := b.emitAtRate(ctx, f.pool, rc, "page.published", live, time.Now(), res.Name+" (baseline)"); err != nil {
		return res, err
	}
	if err := b.await(ctx, &res, m, rc, live); err != nil || res.Failure != "" {
		return res, err
	}
	fig.Baseline = rc.latency()
	rc.resetLatency()

	// The same load while the replay runs.
	rp, err := store.CreateReplay(ctx, f.pool, store.ReplayRequest{WebhookID: replayed, Since: time.Now().Add(-24 * time.Hour), RequestedBy: "bench"})
	if err != nil {
		return res, fmt.Errorf("bench: start the replay: %w", err)
	}
	replayStart := time.Now()
	if _, err := b.emitAtRate(ctx, f.pool, rc, "page.published", live, time.Now(), res.Name+" (during the replay)"); err != nil {
		return res, err
	}
	if st, err := store.GetReplay(ctx, f.pool, rp.ID); err == nil {
		fig.RanThrough = st.Status == "running"
	}
	if err := b.await(ctx, &res, m, rc, res.Expected); err != nil {
		return res, err
	}
	fig.During = rc.latency()
	fig.ReplayElapsed = time.Since(replayStart)
	if last := rc.last.Load(); last > 0 {
		fig.ReplayElapsed = time.Duration(last - replayStart.UnixNano())
	}
	if fig.ReplayElapsed > 0 {
		fig.ReplayPerSecond = float64(b.o.ReplayEvents) / fig.ReplayElapsed.Seconds()
	}
	if fig.Baseline != nil && fig.During != nil && fig.Baseline.P50 > 0 && fig.Baseline.P99 > 0 {
		fig.P50Ratio = float64(fig.During.P50) / float64(fig.Baseline.P50)
		fig.P99Ratio = float64(fig.During.P99) / float64(fig.Baseline.P99)
	}
	if err := b.finish(ctx, &res, m, f); err != nil {
		return res, err
	}
	res.Latency = fig.During
	return res, nil
}

// resetLatency forgets the latencies measured so far (the counts stay).
func (rc *receiver) resetLatency() {
	rc.mu.Lock()
	rc.lat = rc.lat[:0]
	rc.mu.Unlock()
}

func (f *ReplayFigures) print(w interface{ Write([]byte) (int, error) }, s Scenario) {
	fmt.Fprintf(w, "\n%s [%s]\n", s.Name, s.Mode)
	fmt.Fprintf(w, "  %s\n", s.verdict())
	if f.Baseline != nil {
		fmt.Fprintf(w, "  live webhook, no replay:      p50 %s  p90 %s  p99 %s  max %s\n",
			ms(f.Baseline.P50), ms(f.Baseline.P90), ms(f.Baseline.P99), ms(f.Baseline.Max))
	}
	if f.During != nil {
		fmt.Fprintf(w, "  live webhook, replay running: p50 %s  p90 %s  p99 %s  max %s\n",
			ms(f.During.P50), ms(f.During.P90), ms(f.During.P99), ms(f.During.Max))
	}
	through := "the replay ran through the whole live load"
	if !f.RanThrough {
		through = "the replay finished before the live load did: use more --replay-events"
	}
	fmt.Fprintf(w, "  ratio during/baseline: p50 %.2fx, p99 %.2fx (%s)\n", f.P50Ratio, f.P99Ratio, through)
	fmt.Fprintf(w, "  replay: %.0f deliveries/s (%s)\n", f.ReplayPerSecond, f.ReplayElapsed.Round(time.Millisecond))
}
