package pipeline

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"
)

// Channels the database notifies at commit: relay.emit notifies outboxChannel; the
// fan-out, redeliveries, replay batches, released ordered keys and handed-back leases
// deliveriesChannel; a new replay replaysChannel. A notification is only a hint to poll
// now; the pollers still poll on their interval, so a lost notification costs latency,
// never data.
const (
	outboxChannel     = "relay_outbox"
	deliveriesChannel = "relay_deliveries"
	replaysChannel    = "relay_replays"
)

// notifier holds one dedicated connection in LISTEN and turns notifications into
// wake-ups. Each wake channel has room for one pending wake: many commits in a burst
// collapse into one poll.
type notifier struct {
	config     *pgx.ConnConfig
	log        zerolog.Logger
	outbox     chan struct{}
	deliveries chan struct{}
	replays    chan struct{}
}

func newNotifier(config *pgx.ConnConfig, log zerolog.Logger) *notifier {
	return &notifier{
		config:     config,
		log:        log,
		outbox:     make(chan struct{}, 1),
		deliveries: make(chan struct{}, 1),
		replays:    make(chan struct{}, 1),
	}
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (n *notifier) run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := n.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		n.log.Warn().Err(err).Dur("retry_in", backoff).Msg("notification listener lost its connection; polling meanwhile")
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

func (n *notifier) listen(ctx context.Context) error {
	conn, err := pgx.ConnectConfig(ctx, n.config)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, ch := range []string{outboxChannel, deliveriesChannel, replaysChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			return err
		}
	}
	// Anything committed while we were not listening was not announced.
	wake(n.outbox)
	wake(n.deliveries)
	wake(n.replays)
	for {
		note, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		switch note.Channel {
		case outboxChannel:
			wake(n.outbox)
		case deliveriesChannel:
			wake(n.deliveries)
		case replaysChannel:
			wake(n.replays)
		}
	}
}
