package pipeline

import (
	"fmt"
	"time"

	"github.com/relayhq/relay/relay/internal/metrics"
	"github.com/relayhq/relay/relay/internal/netguard"
)

// Config is everything a Relay needs to run. The CLI fills it from flags and
// environment variables, defaults from DefaultConfig, and checks it with Validate before
// anything starts; New checks it again for every other caller.
type Config struct {
	// HTTPTimeout bounds each delivery attempt, from dial to the end of the response
	// headers and excerpt.
	HTTPTimeout time.Duration
	// Retry decides when a failed delivery is tried again.
	Retry RetryPolicy
	// Targets is the SSRF guard for outgoing deliveries; nil refuses every private,
	// loopback and metadata address.
	Targets *netguard.Policy
	// Workers bounds the requests in flight in this process (and, four times over, the
	// results waiting for their record).
	Workers int
	// WebhookConcurrency bounds the requests in flight to one webhook from this
	// process, so one slow receiver cannot take all the workers. The bound is per
	// process: enforcing it across relays would cost a claim per freed slot.
	WebhookConcurrency int
	// PollInterval is the fallback wait between polls of the outbox when no
	// notification arrives; due deliveries nobody announced are looked for every
	// claimPoll.
	PollInterval time.Duration
	// ClaimBatch is the most deliveries claimed in one statement.
	ClaimBatch int
	// OutboxBatch is watermill-sql's SubscribeBatchSize for the outbox.
	OutboxBatch int
	// StripeSecret (WEBHOOK_SECRET, whsec_...) verifies incoming Stripe events and
	// re-signs stripe.* deliveries.
	StripeSecret string
	// DisableAfter disables a webhook that has failed without a single 2xx for this
	// long; zero never disables.
	DisableAfter time.Duration
	// Retention prunes finished deliveries (succeeded, failed or cancelled) with their
	// attempts, and the webhooks' per-minute statistics, older than this; zero keeps
	// them. It never prunes events: EventRetention does.
	Retention time.Duration
	// EventRetention prunes events older than this that the relays have read and that
	// have no pending or failed delivery (a failed one can still be redelivered, which
	// needs the event); their finished deliveries go with them. Zero, the default,
	// keeps every event: the log is the record of what happened in the CMS.
	EventRetention time.Duration
	// ReplayRate bounds the deliveries this process's replays create per second, all
	// replays together: replayed work must leave the machine to live work (README:
	// Replay). A replay also waits while store.ReplayPending of its deliveries are pending.
	ReplayRate int
	// InstanceID names this process in logs and leases; empty picks a random one.
	InstanceID string
	// Metrics receives counts and timings from the pipeline; nil turns them off.
	Metrics *metrics.Metrics
}

// DefaultConfig returns the documented defaults. It is the one place they are written:
// the command line shows and applies these (README.md, "Configuration").
func DefaultConfig() Config {
	return Config{
		HTTPTimeout:        10 * time.Second,
		Retry:              RetryPolicy{Schedule: DefaultRetrySchedule(), Jitter: 0.2},
		Workers:            64,
		WebhookConcurrency: 8,
		PollInterval:       time.Second,
		ClaimBatch:         100,
		OutboxBatch:        100,
		DisableAfter:       120 * time.Hour,
		Retention:          720 * time.Hour,
		EventRetention:     0, // keep the log
		// Measured beside 500 live events/s on two cores (README: Performance): 250/s of
		// replay raised the live p50 1.11×, 500/s 1.7–2.6×.
		ReplayRate: 250,
	}
}

// A ConfigError names the invalid field of a Config (its Go name, e.g. "HTTPTimeout",
// which the CLI maps to the variable that set it) and says why.
type ConfigError struct {
	Field  string
	Reason string
}

func (e *ConfigError) Error() string { return e.Field + ": " + e.Reason }

// Validate is the one check of a Config's ranges (the CLI parses values and leaves the
// ranges to it). It reports the first invalid field, as a *ConfigError.
func (c Config) Validate() error {
	const century = 100 * 365 * 24 * time.Hour
	for _, d := range []struct {
		field  string
		value  time.Duration
		lo, hi time.Duration
	}{
		{"HTTPTimeout", c.HTTPTimeout, time.Millisecond, 10 * time.Minute},
		{"Retention", c.Retention, 0, century},
		{"EventRetention", c.EventRetention, 0, century},
		{"DisableAfter", c.DisableAfter, 0, century},
		{"PollInterval", c.PollInterval, time.Millisecond, time.Hour},
	} {
		if d.value < d.lo || d.value > d.hi {
			return &ConfigError{d.field, fmt.Sprintf("%s is out of range [%s, %s]", d.value, d.lo, d.hi)}
		}
	}
	for _, n := range []struct {
		field  string
		value  int
		lo, hi int
	}{
		{"Workers", c.Workers, 1, 10000},
		{"WebhookConcurrency", c.WebhookConcurrency, 1, 10000},
		{"ReplayRate", c.ReplayRate, 1, 1_000_000},
	} {
		if n.value < n.lo || n.value > n.hi {
			return &ConfigError{n.field, fmt.Sprintf("%d is out of range [%d, %d]", n.value, n.lo, n.hi)}
		}
	}
	if c.ClaimBatch < 1 {
		return &ConfigError{"ClaimBatch", fmt.Sprintf("%d is less than 1", c.ClaimBatch)}
	}
	if c.OutboxBatch < 1 {
		return &ConfigError{"OutboxBatch", fmt.Sprintf("%d is less than 1", c.OutboxBatch)}
	}
	if c.Retry.Jitter < 0 || c.Retry.Jitter >= 1 {
		return &ConfigError{"Retry.Jitter", fmt.Sprintf("%g is out of range [0, 1)", c.Retry.Jitter)}
	}
	return nil
}

// prefetch is how many deliveries of one webhook a relay holds at most (in flight and
// waiting to start): a whole outbox batch, so that the fan-out leases a backlog to the
// relay without a claim in between (a claim costs about as much for 60 deliveries as
// for 8), and several requests' worth for each request slot.
func (c Config) prefetch() int { return max(4*c.WebhookConcurrency, c.OutboxBatch) }

// queueBudget bounds the deliveries a relay holds and has not started, across
// webhooks: two outbox batches, and enough to keep every worker busy twice over.
func (c Config) queueBudget() int { return 2 * max(c.Workers, c.OutboxBatch, c.ClaimBatch) }

// claimPoll is how often the claim looks for due deliveries nobody announced: another
// relay's retries or leases once that relay is gone (a lease lasts leaseFor, tens of
// seconds). Everything else wakes it: new deliveries, redeliveries, replays and handed
// back leases notify, and this relay's own retries set a timer. Five outbox polls'
// worth: measured idle with fsync on, polling both stages every second cost the relay
// 0.30% of a core, every 5 s 0.10-0.13%.
func (c Config) claimPoll() time.Duration { return 5 * c.PollInterval }

// leaseFor is how long a claimed delivery stays ours: the attempt's timeout plus room
// to record its result. A relay that dies mid-attempt loses the lease after this.
func (c Config) leaseFor() time.Duration {
	return c.HTTPTimeout + 15*time.Second
}
