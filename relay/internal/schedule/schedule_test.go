package schedule_test

import (
	"testing"
	"time"

	"github.com/relayhq/relay/relay/internal/schedule"
	"github.com/relayhq/relay/relay/internal/store"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable time for the scheduler: tests move it, never sleep.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newScheduler(c *clock, perWebhook, workers int) *schedule.Scheduler {
	return schedule.New(schedule.Config{PerWebhook: perWebhook, Workers: workers, Prefetch: 2 * perWebhook,
		QueueBudget: 100, MinLease: 10 * time.Second, Now: c.Now})
}

// d is delivery id of webhook w, due at t0+due, leased for a minute from t0.
func d(id int64, w string, due time.Duration) *schedule.Delivery {
	return &schedule.Delivery{
		Claimed:    store.Claimed{Lease: store.Lease{ID: id, Token: "t"}, WebhookID: w, DueAt: t0.Add(due)},
		LeaseUntil: t0.Add(time.Minute), ClaimedAt: t0,
	}
}

// drain calls Next until nothing may start and returns the ids started, in order.
func drain(s *schedule.Scheduler) (ids []int64, stale []int64) {
	for {
		next, st := s.Next()
		for _, x := range st {
			stale = append(stale, x.ID)
		}
		if next == nil {
			return ids, stale
		}
		ids = append(ids, next.ID)
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNextStartsOldestDueFirstWithinEveryBound(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                string
		perWebhook, workers int
		held                []*schedule.Delivery
		want                []int64
	}{
		{"oldest due first across webhooks", 8, 64,
			[]*schedule.Delivery{d(1, "a", 3*time.Second), d(2, "b", time.Second), d(3, "a", 4*time.Second), d(4, "c", 2*time.Second)},
			[]int64{2, 4, 1, 3}},
		{"same due: lower id (commit order) first", 8, 64,
			[]*schedule.Delivery{d(7, "a", 0), d(5, "b", 0), d(6, "c", 0)},
			[]int64{5, 6, 7}},
		{"at most PerWebhook to one webhook", 2, 64,
			[]*schedule.Delivery{d(1, "a", 0), d(2, "a", time.Second), d(3, "a", 2*time.Second), d(4, "b", 3*time.Second)},
			[]int64{1, 2, 4}},
		{"a hanging webhook does not hold up the others", 1, 64,
			[]*schedule.Delivery{d(1, "slow", 0), d(2, "slow", 0), d(3, "slow", 0), d(4, "fast", time.Second), d(5, "fast", 2*time.Second)},
			[]int64{1, 4}},
		{"at most Workers in all", 8, 3,
			[]*schedule.Delivery{d(1, "a", 0), d(2, "b", 0), d(3, "c", 0), d(4, "d", 0)},
			[]int64{1, 2, 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t0}
			s := newScheduler(c, tc.perWebhook, tc.workers)
			for _, x := range tc.held {
				s.Add(x)
			}
			if got, _ := drain(s); !equal(got, tc.want) {
				t.Errorf("started %v, want %v", got, tc.want)
			}
		})
	}
}

func TestFreedSlotsLetTheNextOneStart(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	s := schedule.New(schedule.Config{PerWebhook: 1, Workers: 2, Recording: 1, Prefetch: 4, QueueBudget: 16,
		MinLease: time.Minute, Now: c.Now})
	s.Add(d(1, "a", 0), d(2, "a", time.Second), d(3, "b", 0), d(4, "b", time.Second), d(5, "c", 2*time.Second))
	if got, _ := drain(s); !equal(got, []int64{1, 3}) {
		t.Fatalf("started %v, want [1 3]", got)
	}
	// The response of 1 is in: its worker is free, and a's next request starts while 1
	// is recorded.
	s.RequestDone(1, false)
	if got, _ := drain(s); !equal(got, []int64{2}) {
		t.Fatalf("after 1's response: started %v, want [2]", got)
	}
	// 1 and 2 wait for their record, 3 is in flight: with Recording 1, three started is
	// the most (2 workers + 1 result waiting), so nothing starts until a record is in.
	s.RequestDone(2, false)
	if got, _ := drain(s); len(got) != 0 {
		t.Fatalf("started %v with 2 results waiting for their record and 1 request in flight", got)
	}
	s.Done(1)
	if got, _ := drain(s); !equal(got, []int64{5}) {
		t.Fatalf("after 1 was recorded: started %v, want [5]", got)
	}
	// Done without RequestDone (the handler gave up) frees both.
	s.Done(3)
	if got, _ := drain(s); !equal(got, []int64{4}) {
		t.Fatalf("after 3 was given up: started %v, want [4]", got)
	}
	// Calling twice is harmless.
	s.RequestDone(2, false)
	s.Done(2)
	s.Done(2)
	if w := s.Working(); w != 2 {
		t.Errorf("working = %d, want 2 (deliveries 4 and 5)", w)
	}
}

func TestGoneDropsWhatIsHeldForThatWebhookOnly(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	s := newScheduler(c, 1, 8)
	s.Add(d(1, "gone", 0), d(2, "gone", time.Second), d(3, "gone", 2*time.Second), d(4, "ok", 0), d(5, "ok", time.Second))
	drain(s)
	dropped := s.RequestDone(1, true)
	var ids []int64
	for _, x := range dropped {
		ids = append(ids, x.ID)
	}
	if !equal(ids, []int64{2, 3}) {
		t.Errorf("410 dropped %v, want [2 3]", ids)
	}
	s.Done(1)
	s.RequestDone(4, false)
	s.Done(4)
	if got, _ := drain(s); !equal(got, []int64{5}) {
		t.Errorf("after the 410: started %v, want only the other webhook's [5]", got)
	}
}

func TestAQueuedDeliveryWhoseLeaseCannotCoverAnAttemptIsHandedBack(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	s := newScheduler(c, 1, 8)
	s.Add(d(1, "a", 0), d(2, "a", time.Second))
	drain(s)
	// 55 s later the lease (a minute from t0) has 5 s left, less than MinLease.
	c.now = t0.Add(55 * time.Second)
	s.RequestDone(1, false)
	s.Done(1)
	got, stale := drain(s)
	if len(got) != 0 || !equal(stale, []int64{2}) {
		t.Errorf("started %v, stale %v; want none started and 2 handed back", got, stale)
	}
}

func TestClaimRoomRefillAndDrain(t *testing.T) {
	t.Parallel()
	c := &clock{t0}
	s := newScheduler(c, 2, 64) // Prefetch 4
	s.Add(d(1, "a", 0), d(2, "a", 0), d(3, "a", 0), d(4, "b", 0))
	room, budget := s.ClaimRoom()
	if room["a"] != 1 || room["b"] != 3 || budget != 96 {
		t.Errorf("room %v, budget %d; want a 1, b 3, budget 96", room, budget)
	}
	if s.TakeRefill() {
		t.Errorf("refill before anything ran low")
	}
	// The claim took all the room it offered a (3) and less than b's (1 of 4).
	s.Claimed(map[string]int{"a": 3}, 4, map[string]int{"a": 3, "b": 1})
	drain(s) // 1, 2 of a; 4 of b
	s.RequestDone(4, false)
	if s.TakeRefill() {
		t.Errorf("b ran low but its claim found all it had: no refill")
	}
	s.RequestDone(1, false)
	if !s.TakeRefill() || s.TakeRefill() {
		t.Errorf("a webhook with more due at or below PerWebhook should ask for a refill once")
	}
	s.Done(1)
	held := s.Drain()
	if len(held) != 1 || held[0].ID != 3 {
		t.Errorf("drain returned %v, want [3]", held)
	}
	if _, budget := s.ClaimRoom(); budget != 100 {
		t.Errorf("budget after drain = %d, want 100", budget)
	}
	s.Unstart(4)
	if _, ok := s.Started(4); ok {
		t.Errorf("4 still started after Unstart")
	}
}
