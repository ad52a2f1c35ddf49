package relay

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
)

// claimSQL leases due deliveries in one short statement. Per active webhook it takes at
// most (WebhookConcurrency - attempts already in flight to it, on any relay), oldest
// first, skipping rows another relay is claiming right now; then the oldest $2 of
// those across webhooks. Scanning per webhook (LATERAL) is what keeps a receiver with
// a huge backlog or a hang from starving the others.
const claimSQL = `
WITH busy AS (
    SELECT webhook_id, count(*)::int AS n
      FROM relay.deliveries
     WHERE lease_token IS NOT NULL AND status = 'pending' AND lease_expires_at > now()
     GROUP BY webhook_id
), claimable AS (
    SELECT d.id, d.next_attempt_at
      FROM relay.webhooks w
      LEFT JOIN busy b ON b.webhook_id = w.id
     CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at
          FROM relay.deliveries d
         WHERE d.webhook_id = w.id
           AND d.status = 'pending'
           AND d.next_attempt_at <= now()
           AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= now())
         ORDER BY d.next_attempt_at, d.id
         LIMIT greatest($3::int - coalesce(b.n, 0), 0)
           FOR UPDATE OF d SKIP LOCKED
     ) d
     WHERE w.status = 'active'
     ORDER BY d.next_attempt_at, d.id
     LIMIT $2
)
UPDATE relay.deliveries d
   SET lease_owner = $1, lease_token = gen_random_uuid(),
       lease_expires_at = now() + $4::interval
  FROM claimable c, relay.webhooks w, relay.outbox o
 WHERE d.id = c.id AND w.id = d.webhook_id AND o."uuid" = d.event_id::text
RETURNING d.id, d.lease_token, d.event_id, d.attempts, c.next_attempt_at,
          w.id, w.target_url, coalesce(w.secret, ''),
          o.metadata ->> 'event', o.payload::text, o.created_at`

// releaseSQL hands back leases of attempts that never started (shutdown), so another
// relay takes them at once instead of after the lease runs out.
const releaseSQL = `
UPDATE relay.deliveries SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
 WHERE lease_token = ANY($1::uuid[]) AND lease_owner = $2`

// claimed is one leased delivery on its way to the deliver handler.
type claimed struct {
	ID          int64
	LeaseToken  string
	EventID     string
	Attempts    int // attempts made before this one
	DueAt       time.Time
	WebhookID   string
	TargetURL   string
	Secret      string
	Event       string
	Body        []byte
	CommittedAt time.Time
}

type claimedKey struct{}

func claimedFrom(ctx context.Context) (*claimed, bool) {
	c, ok := ctx.Value(claimedKey{}).(*claimed)
	return c, ok
}

// claimSubscriber is a Watermill Subscriber over relay.deliveries: it turns due rows
// into messages for the "deliver" handler. It claims only as many as it has free
// workers, so every claimed delivery starts at once and no lease ages in a queue.
type claimSubscriber struct {
	pool   *pgxpool.Pool
	cfg    Config
	owner  string
	log    zerolog.Logger
	wake   <-chan struct{}
	base   context.Context // parent of message contexts: not cancelled on Close, so in-flight attempts finish
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

func newClaimSubscriber(pool *pgxpool.Pool, cfg Config, owner string, wake <-chan struct{}, log zerolog.Logger) *claimSubscriber {
	return &claimSubscriber{
		pool: pool, cfg: cfg, owner: owner, wake: wake, log: log,
		base:   context.Background(),
		closed: make(chan struct{}),
	}
}

func (s *claimSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		s.loop(ctx, out)
	}()
	return out, nil
}

func (s *claimSubscriber) Close() error {
	s.once.Do(func() { close(s.closed) })
	s.wg.Wait()
	return nil
}

func (s *claimSubscriber) loop(ctx context.Context, out chan<- *message.Message) {
	slots := make(chan struct{}, s.cfg.Workers)
	freed := make(chan struct{}, 1)
	poll := time.NewTimer(0)
	defer poll.Stop()
	for {
		select {
		case <-s.closed:
			return
		case <-ctx.Done():
			return
		default:
		}
		free := cap(slots) - len(slots)
		want := min(free, s.cfg.ClaimBatch)
		var batch []*claimed
		if want > 0 {
			var err error
			batch, err = s.claim(ctx, want)
			if err != nil {
				s.log.Error().Err(err).Msg("claiming deliveries failed; retrying")
				if !sleep(ctx, s.closed, time.Second) {
					return
				}
				continue
			}
		}
		for i, c := range batch {
			slots <- struct{}{}
			msg := message.NewMessage(c.EventID, c.Body)
			msg.SetContext(context.WithValue(s.base, claimedKey{}, c))
			select {
			case out <- msg:
			case <-s.closed:
				<-slots
				s.release(batch[i:])
				return
			case <-ctx.Done():
				<-slots
				s.release(batch[i:])
				return
			}
			go func() {
				select {
				case <-msg.Acked():
				case <-msg.Nacked():
				}
				<-slots
				wake(freed)
			}()
		}
		if want > 0 && len(batch) == want {
			continue // there may be more due right now
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(s.cfg.PollInterval)
		select {
		case <-s.closed:
			return
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-freed:
		case <-poll.C:
		}
	}
}

func (s *claimSubscriber) claim(ctx context.Context, n int) ([]*claimed, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lease := fmt.Sprintf("%d milliseconds", s.cfg.leaseFor().Milliseconds())
	rows, err := s.pool.Query(ctx, claimSQL, s.owner, n, s.cfg.WebhookConcurrency, lease)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*claimed, error) {
		var c claimed
		var body string
		err := row.Scan(&c.ID, &c.LeaseToken, &c.EventID, &c.Attempts, &c.DueAt,
			&c.WebhookID, &c.TargetURL, &c.Secret, &c.Event, &body, &c.CommittedAt)
		c.Body = []byte(body)
		return &c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	// UPDATE ... RETURNING does not keep the CTE's order; the per-webhook promise is
	// that first attempts start in commit order.
	slices.SortFunc(out, func(a, b *claimed) int {
		if c := a.DueAt.Compare(b.DueAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out, nil
}

func (s *claimSubscriber) release(batch []*claimed) {
	if len(batch) == 0 {
		return
	}
	tokens := make([]string, len(batch))
	for i, c := range batch {
		tokens[i] = c.LeaseToken
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.pool.Exec(ctx, releaseSQL, tokens, s.owner); err != nil {
		s.log.Warn().Err(err).Int("deliveries", len(batch)).Msg("could not release leases; they expire by themselves")
	}
}

// sleep waits d unless ctx ends or closed is closed first; it reports whether to go on.
func sleep(ctx context.Context, closed <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-closed:
		return false
	}
}

var _ message.Subscriber = (*claimSubscriber)(nil)
