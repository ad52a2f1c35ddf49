package relay

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The outbox topic and the consumer group every relay shares. Subscribers of one group
// take turns on the outbox, so each event is fanned out by one relay at a time.
const (
	outboxTopic   = "outbox"
	consumerGroup = "relay"
)

// fanoutSQL creates one delivery per active webhook that matches the event and existed
// when it was emitted. ON CONFLICT makes a replayed batch (after a crash, or a nack that
// re-runs the handler in the same transaction) a no-op: one row per (event, webhook).
const fanoutSQL = `
WITH ins AS (
    INSERT INTO relay.deliveries (event_id, webhook_id, next_attempt_at)
    SELECT o."uuid"::uuid, w.id, now()
      FROM relay.outbox o
      JOIN relay.webhooks w
        ON w.status = 'active'
       AND w.created_at <= o.created_at
       AND (w.event = o.metadata ->> 'event'
            OR w.event = '*'
            OR (right(w.event, 2) = '.*' AND starts_with(o.metadata ->> 'event', left(w.event, -1))))
     WHERE o."uuid" = $1
     ORDER BY w.id
    ON CONFLICT (event_id, webhook_id) DO NOTHING
    RETURNING 1
)
SELECT pg_notify('relay_deliveries', '') FROM (SELECT 1 FROM ins LIMIT 1) AS any_new`

// fanout is the Watermill handler of the outbox: it runs inside the subscriber's own
// transaction (sql.TxFromContext), so the delivery rows commit together with the
// consumer group's offset — an event is fanned out exactly once.
func fanout(msg *message.Message) error {
	tx, ok := wsql.TxFromContext(msg.Context())
	if !ok {
		return errors.New("fanout: no subscriber transaction in the message context")
	}
	if _, err := tx.ExecContext(msg.Context(), fanoutSQL, msg.UUID); err != nil {
		return fmt.Errorf("fanout event %s: %w", msg.UUID, err)
	}
	return nil
}

func outboxSchema(batch int) wsql.DefaultPostgreSQLSchema {
	return wsql.DefaultPostgreSQLSchema{
		GenerateMessagesTableName: func(string) string { return "relay.outbox" },
		SubscribeBatchSize:        batch,
	}
}

func outboxOffsets() wsql.DefaultPostgreSQLOffsetsAdapter {
	return wsql.DefaultPostgreSQLOffsetsAdapter{
		GenerateMessagesOffsetsTableName: func(string) string { return "relay.outbox_offsets" },
	}
}

func newOutboxSubscriber(pool *pgxpool.Pool, cfg Config, wake <-chan struct{}, closing <-chan struct{}, logger watermill.LoggerAdapter) (*wsql.Subscriber, error) {
	ackDeadline := 30 * time.Second
	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(pool), wsql.SubscriberConfig{
		ConsumerGroup:  consumerGroup,
		AckDeadline:    &ackDeadline,
		PollInterval:   cfg.PollInterval,
		ResendInterval: 100 * time.Millisecond,
		RetryInterval:  time.Second,
		BackoffManager: &wakeBackoff{wake: wake, closing: closing, poll: cfg.PollInterval, retry: time.Second},
		SchemaAdapter:  outboxSchema(cfg.OutboxBatch),
		OffsetsAdapter: outboxOffsets(),
	}, logger)
	if err != nil {
		return nil, fmt.Errorf("create outbox subscriber: %w", err)
	}
	return sub, nil
}

// wakeBackoff replaces watermill-sql's fixed poll sleep with "sleep until notified or
// the poll interval passes". After a notification it re-polls quickly for a moment:
// an event is visible to the subscriber only once every older transaction in the
// cluster has ended (pg_snapshot_xmin), which can lag the commit by a few ms.
// The subscriber calls it from its single consume loop, so the state needs no lock.
type wakeBackoff struct {
	wake    <-chan struct{}
	closing <-chan struct{}
	poll    time.Duration
	retry   time.Duration

	eagerUntil time.Time
	step       time.Duration
}

const (
	eagerWindow  = 250 * time.Millisecond
	eagerMaxStep = 20 * time.Millisecond
)

func (b *wakeBackoff) HandleError(logger watermill.LoggerAdapter, noMsg bool, err error) time.Duration {
	if err != nil {
		msg := strings.ToLower(err.Error())
		if strings.Contains(msg, "deadlock") || strings.Contains(msg, "concurrent update") {
			return 0
		}
		logger.Error("Error querying the outbox", err, watermill.LogFields{"wait_time": b.retry})
		return b.retry
	}
	if !noMsg {
		b.step = 0
		return 0
	}
	if time.Now().Before(b.eagerUntil) {
		b.step = min(max(2*b.step, time.Millisecond), eagerMaxStep)
		return b.step
	}
	t := time.NewTimer(b.poll)
	defer t.Stop()
	select {
	case <-b.wake:
		b.eagerUntil = time.Now().Add(eagerWindow)
		b.step = 0
	case <-t.C:
	case <-b.closing:
	}
	return 0
}
