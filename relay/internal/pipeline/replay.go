package pipeline

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/store"
)

// replayer works through the running replays (store.ReplayStep), batch after batch
// while they have room, and waits when they have not: a replay's deliveries are
// claimed and sent like any other, and its next batch comes when they are done. Every
// relay runs one; a replay is worked on by one relay at a time, and any relay carries
// on one that another left. All replays together create at most rate deliveries a
// second in this process (a token bucket holding a second's worth).
type replayer struct {
	db   store.Beginner
	log  zerolog.Logger
	rate int
	// wake fires when a replay is created (NOTIFY relay_replays, and when the listener
	// (re)connects).
	wake <-chan struct{}
}

const (
	// replayIdle is the wait between looks when no replay runs and no notification
	// comes (a replay another relay left behind, a lost notification): what it takes
	// another relay to carry on a replay whose relay died, at one query each time.
	replayIdle = 10 * time.Second
	// replayBusy is the wait while the running replays have no room.
	replayBusy = 100 * time.Millisecond
)

func newReplayer(db store.Beginner, log zerolog.Logger, rate int, wake <-chan struct{}) replayer {
	return replayer{db: db, log: log, rate: rate, wake: wake}
}

func (r replayer) run(ctx context.Context) error {
	wait := replayIdle
	tokens, last := float64(r.rate), time.Now()
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-r.wake:
		case <-t.C:
		}
		t.Stop()
		now := time.Now()
		tokens = min(float64(r.rate), tokens+float64(r.rate)*now.Sub(last).Seconds())
		last = now
		// A tenth of a second's worth at least per batch: each batch costs a transaction
		// and four statements whatever it creates (measured: batches of 4 deliveries cost
		// the database 74 µs a delivery in the replay's own bookkeeping).
		if need := max(1, float64(r.rate)/10); tokens < need {
			wait = time.Duration((need - tokens) / float64(r.rate) * float64(time.Second))
			continue
		}
		running, more, created, err := r.pass(ctx, int(tokens))
		tokens -= float64(created)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			r.log.Warn().Err(err).Msg("replay batch failed; trying again")
			wait = replayIdle
		case more:
			wait = 0
		case running:
			wait = replayBusy
		default:
			wait = replayIdle
		}
	}
}

// pass steps each running replay once, creating at most limit deliveries in all, and
// reports whether any runs, whether one has more to do at once, and what it created.
func (r replayer) pass(ctx context.Context, limit int) (running, more bool, created int, err error) {
	ids, err := store.RunningReplays(ctx, r.db)
	if err != nil || len(ids) == 0 {
		return false, false, 0, err
	}
	for _, id := range ids {
		st, err := store.ReplayStep(ctx, r.db, id, limit-created)
		if err != nil {
			return true, more, created, err
		}
		created += st.Created
		if st.Finished {
			r.logFinished(ctx, id)
			continue
		}
		if !st.Busy && !st.Waiting {
			more = true
		}
		if created >= limit {
			break
		}
	}
	return true, more, created, nil
}

func (r replayer) logFinished(ctx context.Context, id int64) {
	rp, err := store.GetReplay(ctx, r.db, id)
	if err != nil {
		return
	}
	ev := r.log.Info()
	if rp.Status != "done" {
		ev = r.log.Warn().Str("reason", deref(rp.Reason))
	}
	ev.Int64("replay_id", id).Str("webhook_id", rp.WebhookID).Str("status", rp.Status).
		Int64("created", rp.Created).Int64("already_existing", rp.Existing).Int64("skipped", rp.Skipped).
		Msg("replay finished")
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
