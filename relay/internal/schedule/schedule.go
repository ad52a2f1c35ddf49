// Package schedule decides, in memory, which claimed delivery may start: at most
// PerWebhook requests in flight to one webhook, Workers requests in flight in the
// process and Recording results beyond them waiting for their record, oldest due first
// across webhooks, and never a delivery whose lease would end
// before its attempt could. A relay claims ahead (up to Prefetch per webhook) so that one
// claim statement feeds many requests; the Scheduler holds what was claimed until it
// can start.
//
// It knows nothing of the database or HTTP: its clock is injected and its tests are
// tables.
package schedule

import (
	"sync"
	"time"

	"github.com/relayhq/relay/relay/internal/store"
)

// Delivery is a claimed delivery waiting for, or making, its attempt.
type Delivery struct {
	store.Claimed
	// LeaseUntil is when the lease runs out by this process's clock (taken before the
	// claim, so it errs early).
	LeaseUntil time.Time
	// ClaimedAt is when the claim was made.
	ClaimedAt time.Time
}

func earlier(a, b *Delivery) bool {
	if c := a.DueAt.Compare(b.DueAt); c != 0 {
		return c < 0
	}
	return a.ID < b.ID
}

// Config bounds a Scheduler.
type Config struct {
	// PerWebhook bounds the requests in flight to one webhook.
	PerWebhook int
	// Workers bounds the requests in flight.
	Workers int
	// Recording bounds the results that wait for their record (which commits them in
	// batches, a few ms each) while the next requests go: a worker is free as soon as
	// its response is in, so that a slow record never holds up requests, and the
	// results queue here instead, up to this many; past it, nothing starts until records
	// catch up. Zero is 4 × Workers.
	Recording int
	// Prefetch bounds the deliveries of one webhook held (in flight and queued).
	Prefetch int
	// QueueBudget bounds the deliveries held and not started, across webhooks.
	QueueBudget int
	// MinLease is the lease an attempt needs left to start (its timeout plus room to
	// record it); a queued delivery with less is handed back instead.
	MinLease time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
}

type hook struct {
	inflight int
	queued   []*Delivery // in due order
	// more: the webhook's last claim took all the room it was given, so more of its
	// deliveries may be due; only then does its queue running low call for a claim
	// (anything else due arrives with a notification or the next poll).
	more bool
}

// Scheduler is safe for concurrent use.
type Scheduler struct {
	cfg Config

	mu      sync.Mutex
	hooks   map[string]*hook
	started map[int64]*started
	// requesting counts the started deliveries whose request is in flight.
	requesting int
	queued     int  // held and not started
	refill     bool // a webhook with more due ran low since TakeRefill
}

// started is a delivery handed out: its request slot is held until RequestDone, its
// worker until Done.
type started struct {
	d          *Delivery
	requesting bool
}

// New returns an empty Scheduler.
func New(cfg Config) *Scheduler {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Recording <= 0 {
		cfg.Recording = 4 * cfg.Workers
	}
	return &Scheduler{cfg: cfg, hooks: map[string]*hook{}, started: map[int64]*started{}}
}

// Add holds claimed deliveries (each webhook's in due order).
func (s *Scheduler) Add(batch ...*Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range batch {
		h := s.hooks[d.WebhookID]
		if h == nil {
			h = &hook{}
			s.hooks[d.WebhookID] = h
		}
		h.queued = append(h.queued, d)
	}
	s.queued += len(batch)
}

// Next returns the oldest-due held delivery whose webhook has a free request slot,
// provided a worker is free, and marks it started (nil when none may start). It also
// returns, as stale, the held deliveries whose lease no longer covers an attempt: the
// caller hands those back.
func (s *Scheduler) Next() (d *Delivery, stale []*Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.requesting >= s.cfg.Workers || len(s.started) >= s.cfg.Workers+s.cfg.Recording {
		return nil, nil
	}
	minLease := s.cfg.Now().Add(s.cfg.MinLease)
	var best *hook
	for id, h := range s.hooks {
		for len(h.queued) > 0 && h.queued[0].LeaseUntil.Before(minLease) {
			stale = append(stale, h.queued[0])
			h.queued = h.queued[1:]
			s.queued--
		}
		if len(h.queued) == 0 && h.inflight == 0 {
			delete(s.hooks, id)
			continue
		}
		if len(h.queued) == 0 || h.inflight >= s.cfg.PerWebhook {
			continue
		}
		if best == nil || earlier(h.queued[0], best.queued[0]) {
			best = h
		}
	}
	if best == nil {
		return nil, stale
	}
	d = best.queued[0]
	best.queued = best.queued[1:]
	best.inflight++
	s.requesting++
	s.queued--
	s.started[d.ID] = &started{d: d, requesting: true}
	return d, stale
}

// Started returns the started delivery id, if it is one.
func (s *Scheduler) Started(id int64) (*Delivery, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.started[id]
	if !ok {
		return nil, false
	}
	return st.d, true
}

// RequestDone frees the request slot of started delivery id: its webhook may get the
// next request while this result is recorded. gone (the receiver answered 410) also
// drops what is held for that webhook, which the caller hands back. Calling it again,
// or for an id not started, does nothing.
func (s *Scheduler) RequestDone(id int64, gone bool) (dropped []*Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requestDone(id, gone)
}

func (s *Scheduler) requestDone(id int64, gone bool) (dropped []*Delivery) {
	st, ok := s.started[id]
	if !ok || !st.requesting {
		return nil
	}
	st.requesting = false
	s.requesting--
	h := s.hooks[st.d.WebhookID]
	if h == nil {
		return nil
	}
	h.inflight--
	if gone {
		dropped, h.queued = h.queued, nil
		s.queued -= len(dropped)
	}
	// Claim again once half of what may be held is gone: the next claim arrives while
	// the rest is still being sent.
	if h.more && h.inflight+len(h.queued) <= max(s.cfg.PerWebhook, s.cfg.Prefetch/2) {
		s.refill = true
	}
	return dropped
}

// Done frees the worker of started delivery id (its result is recorded, or given up
// on), and its request slot if RequestDone was not called.
func (s *Scheduler) Done(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requestDone(id, false)
	delete(s.started, id)
}

// Unstart undoes Next for a delivery that could not be handed out; the caller hands
// its lease back.
func (s *Scheduler) Unstart(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.started[id]
	if !ok {
		return
	}
	if st.requesting {
		s.requesting--
		if h := s.hooks[st.d.WebhookID]; h != nil {
			h.inflight--
		}
	}
	delete(s.started, id)
}

// ClaimRoom says what the next claim may take: how many more deliveries each held
// webhook may have (others get Prefetch), and how many in all.
func (s *Scheduler) ClaimRoom() (room map[string]int, budget int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	room = make(map[string]int, len(s.hooks))
	for id, h := range s.hooks {
		room[id] = max(s.cfg.Prefetch-h.inflight-len(h.queued), 0)
	}
	return room, s.cfg.QueueBudget - s.queued
}

// Claimed tells the Scheduler what a claim found: given is the room the claim offered
// each webhook (ClaimRoom; defaultRoom for one not in it), got what it took. A webhook
// that got all its room may have more due: its queue running low calls for a refill.
func (s *Scheduler) Claimed(given map[string]int, defaultRoom int, got map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, h := range s.hooks {
		room, ok := given[id]
		if !ok {
			room = defaultRoom
		}
		if room > 0 {
			h.more = got[id] >= room
		}
	}
}

// TakeRefill reports whether a held webhook that may have more due ran low since the
// last call: time to claim again rather than wait for a notification or a poll.
func (s *Scheduler) TakeRefill() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.refill
	s.refill = false
	return r
}

// Drain removes and returns every held delivery not started (shutdown: the caller
// hands their leases back).
func (s *Scheduler) Drain() []*Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*Delivery
	for _, h := range s.hooks {
		all = append(all, h.queued...)
		h.queued = nil
	}
	s.queued = 0
	return all
}

// Working is the number of started deliveries not yet recorded (or given up on).
func (s *Scheduler) Working() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.started)
}
