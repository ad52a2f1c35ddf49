package pipeline

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/relay/internal/metrics"
	"github.com/relayhq/relay/relay/internal/store"
)

// fanouter is the Watermill handler of the outbox. The subscriber hands a batch over one
// message at a time, each waiting for the previous ack; the first message's statement
// fans out the whole batch (store.FanOut), and the following messages of the same
// subscriber transaction find themselves already covered.
//
// The statement is its own transaction, committed before the handler returns, so the
// deliveries it leased to this relay can be sent at once: the unique (event, webhook)
// key, not the subscriber's transaction, is what makes a replayed batch a no-op. (That
// transaction still advances the consumer offset only once the batch is fanned out.)
type fanouter struct {
	pool   *pgxpool.Pool
	batch  int
	sender *claimSubscriber // where leased deliveries go

	mu      sync.Mutex
	tx      wsql.Tx             // the subscriber transaction covered belongs to
	covered map[string]struct{} // events fanned out for tx
}

func (f *fanouter) handle(msg *message.Message) error {
	tx, ok := wsql.TxFromContext(msg.Context())
	if !ok {
		return errors.New("fanout: no subscriber transaction in the message context")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tx == tx {
		if _, done := f.covered[msg.UUID]; done {
			return nil
		}
	}
	covered, err := f.sender.fanOut(msg.Context(), msg.UUID, f.batch)
	if err != nil {
		return err
	}
	f.tx, f.covered = tx, covered
	return nil
}

// countedFanout is fanout counting each event it read. A replayed batch counts again:
// the counter is what this process did, the delivery rows are what happened.
func countedFanout(m *metrics.Metrics, handle message.NoPublishHandlerFunc) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		if err := handle(msg); err != nil {
			return err
		}
		m.EventRead()
		return nil
	}
}

func newOutboxSubscriber(pool *pgxpool.Pool, cfg Config, wake <-chan struct{}, closing <-chan struct{}, logger watermill.LoggerAdapter) (*wsql.Subscriber, error) {
	ackDeadline := 30 * time.Second
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(pool), wsql.SubscriberConfig{
		ConsumerGroup:  store.ConsumerGroup,
		AckDeadline:    &ackDeadline,
		PollInterval:   cfg.PollInterval,
		ResendInterval: 100 * time.Millisecond,
		RetryInterval:  time.Second,
		BackoffManager: &wakeBackoff{wake: wake, closing: closing, poll: cfg.PollInterval, retry: time.Second},
		SchemaAdapter:  store.NewOutboxSchema(cfg.OutboxBatch),
		OffsetsAdapter: store.OutboxOffsets(),
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("create outbox subscriber: %w", err)
	}
	return sub, nil
}

// wakeBackoff replaces watermill-sql's fixed poll sleep with "sleep until notified or
// the poll interval passes". After a notification it re-polls quickly for a moment:
// an event is visible to the subscriber only once every older transaction in the
// cluster has ended (pg_snapshot_xmin), which usually lags the commit by a few ms but
// lasts as long as the oldest open transaction anywhere in the cluster (a CMS's slow
// transaction, another database's). So after the eager re-polls the wait grows from
// eagerMaxStep by doubling, still woken by any notification, through poll up to
// quietMax × poll: an announced event held back that way is read within about twice
// the time it was held, not a whole poll interval later.
// The subscriber calls it from its single consume loop, so the state needs no lock.
type wakeBackoff struct {
	wake    <-chan struct{}
	closing <-chan struct{}
	poll    time.Duration
	retry   time.Duration

	eagerUntil time.Time
	step       time.Duration
	// quiet is the current wait between polls without a notification: eagerMaxStep
	// after a notification or a batch (poll when the relay starts), doubling up to
	// quietMax × poll while the outbox stays empty and nobody notifies.
	quiet time.Duration
}

const (
	// eagerWindow covers the 50 ms after a notification in which relay.emit does not
	// notify again for the same connection (schema: 00008_writer_cost), plus the time
	// those transactions take to commit; eagerMaxStep keeps those events' wait short.
	eagerWindow  = 250 * time.Millisecond
	eagerMaxStep = 2 * time.Millisecond
	// quietMax bounds the stretched idle poll. The poll finds what no notification
	// announced: a transaction whose relay.emit was not the first of its connection
	// in 50 ms and that committed after the eager window; such an event waits at most
	// this many poll intervals once the relay has been idle for a while. Measured idle
	// (30 s, fsync on): 0.20-0.23% of a core polling every second, 0.07-0.13% so.
	quietMax = 5
)

func (b *wakeBackoff) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	select {
	case <-b.closing:
		// Shutting down: wait rather than query again, so that the subscriber's loop sees
		// its own close; a query started now is cut short by it and logged as an error.
		return b.poll
	default:
	}
	if err != nil {
		msg := strings.ToLower(err.Error())
		if strings.Contains(msg, "deadlock") || strings.Contains(msg, "concurrent update") {
			return 0
		}
		logger.Error("Error querying the outbox", err, watermill.LogFields{"wait_time": b.retry})
		return b.retry
	}
	if !noMsg {
		b.step, b.quiet = 0, eagerMaxStep
		return 0
	}
	if time.Now().Before(b.eagerUntil) {
		b.step = min(max(2*b.step, time.Millisecond), eagerMaxStep)
		return b.step
	}
	if b.quiet == 0 {
		b.quiet = b.poll
	}
	t := time.NewTimer(b.quiet)
	defer t.Stop()
	select {
	case <-b.wake:
		b.eagerUntil = time.Now().Add(eagerWindow)
		b.step, b.quiet = 0, eagerMaxStep
	case <-t.C:
		b.quiet = min(2*b.quiet, quietMax*b.poll)
	case <-b.closing:
		return b.poll // as above
	}
	return 0
}
