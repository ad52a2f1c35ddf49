package pipeline

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

// claimSQL leases due deliveries in one short statement: per active webhook at most
// its room ($5/$6, or $3 for a webhook this relay holds nothing of), oldest first,
// skipping rows another relay is claiming right now; then the oldest $2 of those across
// webhooks. Scanning per webhook (LATERAL) is what keeps a receiver with a huge
// backlog or a hang from starving the others.
const claimSQL = `
WITH room AS (
    SELECT * FROM unnest($5::text[], $6::int[]) AS r(webhook_id, n)
), claimable AS (
    SELECT d.id
      FROM relay.webhooks w
      LEFT JOIN room ON room.webhook_id = w.id
     CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at
          FROM relay.deliveries d
         WHERE d.webhook_id = w.id
           AND d.status = 'pending'
           AND d.next_attempt_at <= now()
           AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= now())
         ORDER BY d.next_attempt_at, d.id
         LIMIT greatest(coalesce(room.n, $3::int), 0)
           FOR UPDATE OF d SKIP LOCKED
     ) d
     WHERE w.status = 'active'
     ORDER BY d.next_attempt_at, d.id
     LIMIT $2
)
UPDATE relay.deliveries d
   SET lease_owner = $1, lease_token = gen_random_uuid(),
       lease_expires_at = now() + $4::interval
  FROM relay.webhooks w, relay.outbox o
 -- = ANY(ARRAY(...)) rather than a join with the CTE: the planner cannot estimate the
 -- CTE's few rows and would hash-join a sequential scan of every delivery.
 WHERE d.id = ANY(ARRAY(SELECT id FROM claimable))
   AND w.id = d.webhook_id AND o."uuid"::uuid = d.event_id
RETURNING d.id, d.lease_token, d.event_id, d.attempts, d.next_attempt_at,
          w.id, w.target_url, coalesce(w.secret, ''),
          o.metadata ->> 'event', o.payload::text, o.created_at,
          -- Stripe's signature only for what the Stripe endpoint created, only to a
          -- webhook an operator marked, and not on a redelivery unless asked for.
          (o.source = 'stripe' AND w.stripe_signature AND d.sign_stripe),
          coalesce(o.metadata ->> 'content_version', '')`

// releaseSQL hands back leases of attempts that never started (shutdown), so another
// relay takes them at once instead of after the lease runs out.
const releaseSQL = `
UPDATE relay.deliveries SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
 WHERE id = ANY($1::bigint[]) AND lease_token = ANY($2::uuid[]) AND lease_owner = $3`

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
	// StripeSign says the attempt carries a Stripe-Signature (see claimSQL).
	StripeSign bool
	// ContentVersion is the Content-Version the event's Ghost site sent; empty for
	// events from elsewhere.
	ContentVersion string

	// leaseUntil is when the lease runs out, by this process's clock (taken before the
	// claim, so it errs early).
	leaseUntil time.Time
	// claimedAt is when the claim was made.
	claimedAt time.Time
	// finish tells the subscriber that the request to the receiver is over, so the
	// webhook may get another one while this result is still being recorded; gone
	// drops what is queued for the webhook.
	finish func(gone bool)
}

// staleAfter is how long a delivery may wait in the queue before its attempt checks
// that it is still wanted.
const staleAfter = 500 * time.Millisecond

func (c *claimed) stale() bool { return time.Since(c.claimedAt) > staleAfter }

// done calls finish if set (a claimed made elsewhere, as in tests, has none).
func (c *claimed) done(gone bool) {
	if c.finish != nil {
		c.finish(gone)
	}
}

type claimedKey struct{}

func claimedFrom(ctx context.Context) (*claimed, bool) {
	c, ok := ctx.Value(claimedKey{}).(*claimed)
	return c, ok
}

// hook is what this relay holds of one webhook: requests in flight to it and leased
// deliveries queued behind them, in due order.
type hook struct {
	inflight int
	queued   []*claimed
}

// claimSubscriber is a Watermill Subscriber over relay.deliveries: it turns due rows into
// messages for the "deliver" handler.
//
// It claims ahead (up to 2x the per-webhook concurrency for each webhook) so that one
// claim statement feeds many requests, and hands a delivery to the router only when its
// webhook has a free request slot and a worker is free. A request slot frees when the
// response is in; a worker when the result is recorded (the message is acked). Leases
// run from the claim, so a queued delivery whose lease would end before its attempt
// could is handed back rather than sent.
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

	kick chan struct{} // a request slot or a worker freed up

	mu      sync.Mutex
	hooks   map[string]*hook
	working int  // messages handed to the router and not yet acked or nacked
	queued  int  // deliveries claimed and not yet handed out
	refill  bool // a held webhook's queue ran low since the last claim
}

func newClaimSubscriber(pool *pgxpool.Pool, cfg Config, owner string, wake <-chan struct{}, log zerolog.Logger) *claimSubscriber {
	return &claimSubscriber{
		pool: pool, cfg: cfg, owner: owner, wake: wake, log: log,
		base:   context.Background(),
		closed: make(chan struct{}),
		kick:   make(chan struct{}, 1),
		hooks:  map[string]*hook{},
	}
}

func (s *claimSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		s.loop(ctx, out)
		s.releaseQueued()
	}()
	return out, nil
}

func (s *claimSubscriber) Close() error {
	s.once.Do(func() { close(s.closed) })
	s.wg.Wait()
	return nil
}

// prefetch is how many deliveries of one webhook this relay holds at most.
func (s *claimSubscriber) prefetch() int { return 2 * s.cfg.WebhookConcurrency }

// queueBudget bounds the deliveries claimed but not yet started, across webhooks.
func (s *claimSubscriber) queueBudget() int { return max(s.cfg.Workers, s.cfg.ClaimBatch) }

func (s *claimSubscriber) loop(ctx context.Context, out chan<- *message.Message) {
	poll := time.NewTimer(0)
	defer poll.Stop()
	claimNow := true
	for {
		select {
		case <-s.closed:
			return
		case <-ctx.Done():
			return
		default:
		}
		if !s.dispatch(ctx, out) {
			return
		}
		s.mu.Lock()
		budget := s.queueBudget() - s.queued
		if s.refill {
			claimNow, s.refill = true, false
		}
		s.mu.Unlock()
		if claimNow && budget > 0 {
			n, err := s.claim(ctx, min(budget, s.cfg.ClaimBatch))
			if err != nil {
				if s.stopping(ctx) {
					return
				}
				s.log.Error().Err(err).Msg("claiming deliveries failed; retrying")
				if !sleep(ctx, s.closed, time.Second) {
					return
				}
				continue
			}
			claimNow = n == min(budget, s.cfg.ClaimBatch) // a full batch: there may be more
			if n > 0 {
				continue
			}
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
			claimNow = true
		case <-poll.C:
			claimNow = true
		case <-s.kick:
		}
	}
}

// dispatch hands every startable delivery to the router, oldest due first; it reports
// false when the subscriber is closing.
func (s *claimSubscriber) dispatch(ctx context.Context, out chan<- *message.Message) bool {
	for {
		c, stale := s.next()
		if len(stale) > 0 {
			s.release(stale)
		}
		if c == nil {
			return true
		}
		msg := message.NewMessage(c.EventID, c.Body)
		msg.SetContext(context.WithValue(s.base, claimedKey{}, c))
		select {
		case out <- msg:
		case <-s.closed:
			s.unstart(c)
			return false
		case <-ctx.Done():
			s.unstart(c)
			return false
		}
		go func() {
			select {
			case <-msg.Acked():
			case <-msg.Nacked():
			}
			c.done(false) // no-op if the handler already said so
			s.mu.Lock()
			s.working--
			s.mu.Unlock()
			wake(s.kick)
		}()
	}
}

// next takes the oldest-due queued delivery whose webhook has a free request slot,
// provided a worker is free, and marks it started. Queued deliveries whose lease is too
// close to its end to cover an attempt are returned as stale.
func (s *claimSubscriber) next() (c *claimed, stale []*claimed) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.working >= s.cfg.Workers {
		return nil, nil
	}
	minLease := time.Now().Add(s.cfg.HTTPTimeout + 5*time.Second)
	var best *hook
	for id, h := range s.hooks {
		for len(h.queued) > 0 && h.queued[0].leaseUntil.Before(minLease) {
			stale = append(stale, h.queued[0])
			h.queued = h.queued[1:]
			s.queued--
		}
		if len(h.queued) == 0 && h.inflight == 0 {
			delete(s.hooks, id)
			continue
		}
		if len(h.queued) == 0 || h.inflight >= s.cfg.WebhookConcurrency {
			continue
		}
		if best == nil || earlier(h.queued[0], best.queued[0]) {
			best = h
		}
	}
	if best == nil {
		return nil, stale
	}
	c = best.queued[0]
	best.queued = best.queued[1:]
	best.inflight++
	s.queued--
	s.working++
	var once sync.Once
	c.finish = func(gone bool) { once.Do(func() { s.requestDone(c.WebhookID, gone) }) }
	return c, stale
}

func earlier(a, b *claimed) bool {
	if c := a.DueAt.Compare(b.DueAt); c != 0 {
		return c < 0
	}
	return a.ID < b.ID
}

// requestDone frees the webhook's request slot; gone also drops (and hands back) what
// is queued for it.
func (s *claimSubscriber) requestDone(webhookID string, gone bool) {
	var dropped []*claimed
	s.mu.Lock()
	if h := s.hooks[webhookID]; h != nil {
		h.inflight--
		if gone {
			dropped, h.queued = h.queued, nil
			s.queued -= len(dropped)
		}
		if h.inflight+len(h.queued) <= s.cfg.WebhookConcurrency {
			s.refill = true
		}
	}
	s.mu.Unlock()
	s.release(dropped)
	wake(s.kick)
}

// unstart undoes next for a delivery that could not be handed out, and hands its lease
// back.
func (s *claimSubscriber) unstart(c *claimed) {
	s.mu.Lock()
	if h := s.hooks[c.WebhookID]; h != nil {
		h.inflight--
	}
	s.working--
	s.mu.Unlock()
	s.release([]*claimed{c})
}

func (s *claimSubscriber) claim(ctx context.Context, n int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s.mu.Lock()
	ids := make([]string, 0, len(s.hooks))
	room := make([]int32, 0, len(s.hooks))
	for id, h := range s.hooks {
		ids = append(ids, id)
		room = append(room, int32(max(s.prefetch()-h.inflight-len(h.queued), 0)))
	}
	s.mu.Unlock()

	lease := s.cfg.leaseFor()
	claimedAt := time.Now()
	leaseUntil := claimedAt.Add(lease)
	rows, err := s.pool.Query(ctx, claimSQL, s.owner, n, s.prefetch(),
		fmt.Sprintf("%d milliseconds", lease.Milliseconds()), ids, room)
	if err != nil {
		return 0, fmt.Errorf("claim deliveries: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*claimed, error) {
		c := claimed{leaseUntil: leaseUntil, claimedAt: claimedAt}
		var body string
		err := row.Scan(&c.ID, &c.LeaseToken, &c.EventID, &c.Attempts, &c.DueAt,
			&c.WebhookID, &c.TargetURL, &c.Secret, &c.Event, &body, &c.CommittedAt, &c.StripeSign, &c.ContentVersion)
		c.Body = []byte(body)
		return &c, err
	})
	if err != nil {
		return 0, fmt.Errorf("claim deliveries: %w", err)
	}
	// UPDATE ... RETURNING does not keep the CTE's order; the per-webhook promise is
	// that first attempts start in commit order.
	slices.SortFunc(batch, func(a, b *claimed) int {
		if c := a.DueAt.Compare(b.DueAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	s.mu.Lock()
	for _, c := range batch {
		h := s.hooks[c.WebhookID]
		if h == nil {
			h = &hook{}
			s.hooks[c.WebhookID] = h
		}
		h.queued = append(h.queued, c)
	}
	s.queued += len(batch)
	s.mu.Unlock()
	return len(batch), nil
}

// releaseQueued hands back every delivery claimed but not started (shutdown).
func (s *claimSubscriber) releaseQueued() {
	s.mu.Lock()
	var all []*claimed
	for _, h := range s.hooks {
		all = append(all, h.queued...)
		s.queued -= len(h.queued)
		h.queued = nil
	}
	s.mu.Unlock()
	s.release(all)
}

func (s *claimSubscriber) release(batch []*claimed) {
	if len(batch) == 0 {
		return
	}
	ids := make([]int64, len(batch))
	tokens := make([]string, len(batch))
	for i, c := range batch {
		ids[i], tokens[i] = c.ID, c.LeaseToken
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.pool.Exec(ctx, releaseSQL, ids, tokens, s.owner); err != nil {
		s.log.Warn().Err(err).Int("deliveries", len(batch)).Msg("could not release leases; they expire by themselves")
	}
}

// stopping reports whether the subscriber is shutting down (a failed claim then is
// the shutdown cutting it short, not an error).
func (s *claimSubscriber) stopping(ctx context.Context) bool {
	select {
	case <-s.closed:
		return true
	default:
		return ctx.Err() != nil
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
