package pipeline

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/schedule"
	"github.com/relayhq/relay/relay/internal/store"
)

// deliveryIDKey is the metadata key of a "deliver" message: the delivery's id, by which
// the handler finds it in the scheduler.
const deliveryIDKey = "delivery_id"

// claimSubscriber is a Watermill Subscriber over relay.deliveries: it claims due rows
// (store.Claim) into the scheduler and turns those the scheduler lets start into
// messages for the "deliver" handler. A delivery's request slot and worker free when its
// response is in (the handler calls RequestDone); it leaves the scheduler when its
// result is recorded (Done), up to 4 × Workers results waiting for their record.
type claimSubscriber struct {
	pool *pgxpool.Pool
	// claims and fanouts are the claim's and the fan-out's pools (claimPool, keyedPool).
	claims, fanouts *pgxpool.Pool
	cfg             Config
	owner           string
	log             zerolog.Logger
	sched           *schedule.Scheduler
	wake            <-chan struct{}
	closed          chan struct{}
	once            sync.Once
	wg              sync.WaitGroup

	kick chan struct{} // a request slot or a worker freed up
	// recheck takes the deliveries a fan-out held, for their second look.
	recheck *rechecker
	// retryAt is the earliest retry this relay recorded (unix nanoseconds, 0 none): the
	// claim loop wakes for it rather than at its next poll.
	retryAt atomic.Int64
}

func newClaimSubscriber(pool *pgxpool.Pool, cfg Config, owner string, wake <-chan struct{}, log zerolog.Logger) *claimSubscriber {
	s := &claimSubscriber{
		pool: pool, claims: pool, fanouts: pool, cfg: cfg, owner: owner, wake: wake, log: log,
		sched: schedule.New(schedule.Config{
			PerWebhook:  cfg.WebhookConcurrency,
			Workers:     cfg.Workers,
			Prefetch:    cfg.prefetch(),
			QueueBudget: cfg.queueBudget(),
			MinLease:    cfg.HTTPTimeout + 5*time.Second,
		}),
		closed: make(chan struct{}),
		kick:   make(chan struct{}, 1),
	}
	s.recheck = newRechecker(pool, owner, log, s)
	return s
}

func (s *claimSubscriber) Subscribe(ctx context.Context, _ string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(out)
		s.loop(ctx, out)
		s.release(s.sched.Drain())
	}()
	return out, nil
}

func (s *claimSubscriber) Close() error {
	s.once.Do(func() { close(s.closed) })
	s.wg.Wait()
	return nil
}

// delivery, requestDone and done are the deliver handler's side of the scheduler.
func (s *claimSubscriber) delivery(id int64) (*schedule.Delivery, bool) { return s.sched.Started(id) }

func (s *claimSubscriber) requestDone(id int64, gone bool) {
	s.release(s.sched.RequestDone(id, gone))
	wake(s.kick)
}

func (s *claimSubscriber) done(id int64) {
	s.sched.Done(id)
	wake(s.kick)
}

// retryDue tells the loop that a delivery of this relay's is due again at at.
func (s *claimSubscriber) retryDue(at time.Time) {
	n := at.UnixNano()
	for {
		cur := s.retryAt.Load()
		if cur != 0 && cur <= n {
			return
		}
		if s.retryAt.CompareAndSwap(cur, n) {
			wake(s.kick)
			return
		}
	}
}

// nextLease is how many of the deliveries a record lets go it may lease to this relay:
// what the scheduler has room for, and none once the subscriber is closing.
func (s *claimSubscriber) nextLease() store.Next {
	select {
	case <-s.closed:
		return store.Next{}
	default:
	}
	_, budget := s.sched.ClaimRoom()
	return store.Next{Limit: budget, Lease: s.cfg.leaseFor()}
}

// take sends deliveries a record leased to this relay; once the subscriber is closing
// it hands them back instead.
func (s *claimSubscriber) take(leased []store.Claimed, leasedAt time.Time, lease time.Duration) {
	select {
	case <-s.closed:
		leases := make([]store.Lease, len(leased))
		for i, c := range leased {
			leases[i] = c.Lease
		}
		s.releaseLeases(leases)
		return
	default:
	}
	s.hold(leased, leasedAt, lease)
}

func (s *claimSubscriber) lookAgain(ids []int64) { s.recheck.add(ids) }

// nextWait is how long the loop may sleep: until the next poll, or the earliest
// recorded retry if that comes sooner.
func (s *claimSubscriber) nextWait() (time.Duration, bool) {
	wait := s.cfg.claimPoll()
	if at := s.retryAt.Load(); at != 0 {
		if d := time.Until(time.Unix(0, at)); d < wait {
			return max(d, 0), true
		}
	}
	return wait, false
}

func (s *claimSubscriber) loop(ctx context.Context, out chan<- *message.Message) {
	// Go 1.23+ timers: Reset drops a fire nobody read, so no draining is needed.
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	claimNow := true
	for {
		if s.stopping(ctx) || !s.dispatch(ctx, out) {
			return
		}
		room, budget := s.sched.ClaimRoom()
		if s.sched.TakeRefill() {
			claimNow = true
		}
		if claimNow && budget > 0 {
			limit := min(budget, s.cfg.ClaimBatch)
			n, err := s.claim(ctx, limit, room)
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
			claimNow = n == limit // a full batch: there may be more
			if n > 0 {
				continue
			}
		}
		wait, forRetry := s.nextWait()
		timer.Reset(wait)
		select {
		case <-s.closed:
			return
		case <-ctx.Done():
			return
		case <-s.wake:
			claimNow = true
		case <-timer.C:
			claimNow = true
			if forRetry {
				s.retryAt.Store(0)
			}
		case <-s.kick:
		}
	}
}

// dispatch hands every delivery the scheduler lets start to the router; it reports
// false when the subscriber is closing.
func (s *claimSubscriber) dispatch(ctx context.Context, out chan<- *message.Message) bool {
	for {
		d, stale := s.sched.Next()
		s.release(stale)
		if d == nil {
			return true
		}
		msg := message.NewMessage(d.EventID, d.Body)
		msg.Metadata.Set(deliveryIDKey, strconv.FormatInt(d.ID, 10))
		select {
		case out <- msg:
		case <-s.closed:
			s.sched.Unstart(d.ID)
			s.release([]*schedule.Delivery{d})
			return false
		case <-ctx.Done():
			s.sched.Unstart(d.ID)
			s.release([]*schedule.Delivery{d})
			return false
		}
	}
}

func (s *claimSubscriber) claim(ctx context.Context, limit int, room map[string]int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	lease := s.cfg.leaseFor()
	claimedAt := time.Now()
	batch, err := store.Claim(ctx, s.claims, store.ClaimRequest{
		Owner: s.owner, Limit: limit, Room: room, DefaultRoom: s.cfg.prefetch(), Lease: lease,
	})
	if err != nil {
		return 0, err
	}
	s.hold(batch, claimedAt, lease)
	got := make(map[string]int)
	for _, c := range batch {
		got[c.WebhookID]++
	}
	s.sched.Claimed(room, s.cfg.prefetch(), got)
	return len(batch), nil
}

// fanOut fans out the batch starting at eventID (store.FanOut), leasing to this relay
// what the scheduler has room for, and hands those to the scheduler at once.
func (s *claimSubscriber) fanOut(ctx context.Context, eventID string, events int) (map[string]struct{}, error) {
	room, budget := s.sched.ClaimRoom()
	lease := s.cfg.leaseFor()
	leasedAt := time.Now()
	out, err := store.FanOut(ctx, s.fanouts, store.FanOutRequest{
		EventID: eventID, Events: events, Owner: s.owner, Lease: lease,
		Room: room, DefaultRoom: s.cfg.prefetch(), Limit: budget,
	})
	if err != nil {
		return nil, err
	}
	s.hold(out.Leased, leasedAt, lease)
	s.recheck.add(out.Held)
	return out.Covered, nil
}

// hold gives leased deliveries to the scheduler and wakes the loop that starts them.
func (s *claimSubscriber) hold(leased []store.Claimed, leasedAt time.Time, lease time.Duration) {
	if len(leased) == 0 {
		return
	}
	held := make([]*schedule.Delivery, len(leased))
	for i := range leased {
		held[i] = &schedule.Delivery{Claimed: leased[i], LeaseUntil: leasedAt.Add(lease), ClaimedAt: leasedAt}
	}
	s.sched.Add(held...)
	wake(s.kick)
}

func (s *claimSubscriber) release(batch []*schedule.Delivery) {
	if len(batch) == 0 {
		return
	}
	leases := make([]store.Lease, len(batch))
	for i, d := range batch {
		leases[i] = d.Lease
	}
	s.releaseLeases(leases)
}

func (s *claimSubscriber) releaseLeases(leases []store.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := store.Release(ctx, s.pool, s.owner, leases); err != nil {
		s.log.Warn().Err(err).Int("deliveries", len(leases)).Msg("could not release leases; they expire by themselves")
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
