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
// on one that another left.
type replayer struct {
	db  store.Beginner
	log zerolog.Logger
	// idle is the wait between looks for a replay when none runs; busy is the wait
	// while the running ones have no room. Tests shorten them.
	idle, busy time.Duration
}

func newReplayer(db store.Beginner, log zerolog.Logger) replayer {
	return replayer{db: db, log: log, idle: 2 * time.Second, busy: 100 * time.Millisecond}
}

func (r replayer) run(ctx context.Context) error {
	wait := r.idle
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		running, more, err := r.pass(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			r.log.Warn().Err(err).Msg("replay batch failed; trying again")
			wait = r.idle
		case more:
			wait = 0
		case running:
			wait = r.busy
		default:
			wait = r.idle
		}
	}
}

// pass steps each running replay once and reports whether any runs and whether one
// has more to do at once.
func (r replayer) pass(ctx context.Context) (running, more bool, err error) {
	ids, err := store.RunningReplays(ctx, r.db)
	if err != nil || len(ids) == 0 {
		return false, false, err
	}
	for _, id := range ids {
		st, err := store.ReplayStep(ctx, r.db, id)
		if err != nil {
			return true, more, err
		}
		if st.Finished {
			if rp, err := store.GetReplay(ctx, r.db, id); err == nil {
				ev := r.log.Info()
				if rp.Status != "done" {
					ev = r.log.Warn().Str("reason", deref(rp.Reason))
				}
				ev.Int64("replay_id", id).Str("webhook_id", rp.WebhookID).Str("status", rp.Status).
					Int64("created", rp.Created).Int64("already_existing", rp.Existing).Int64("skipped", rp.Skipped).
					Msg("replay finished")
			}
			continue
		}
		if !st.Busy && !st.Waiting {
			more = true
		}
	}
	return true, more, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
