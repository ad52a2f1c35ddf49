package pipeline

import (
	"errors"
	"fmt"
	"time"

	"github.com/relayhq/relay/relay/internal/metrics"
	"github.com/relayhq/relay/relay/internal/netguard"
)

// Config is everything a Relay needs to run. The CLI fills it from flags and
// environment variables in one place; Validate is called once by New.
type Config struct {
	// HTTPTimeout bounds each delivery attempt, from dial to the end of the response
	// headers and excerpt.
	HTTPTimeout time.Duration
	// Retry decides when a failed delivery is tried again.
	Retry RetryPolicy
	// Targets is the SSRF guard for outgoing deliveries; nil refuses every private,
	// loopback and metadata address.
	Targets *netguard.Policy
	// Workers bounds the attempts in flight in this process.
	Workers int
	// WebhookConcurrency bounds the requests in flight to one webhook from this
	// process, so one slow receiver cannot take all the workers. The bound is per
	// process: enforcing it across relays would cost a claim per freed slot.
	WebhookConcurrency int
	// PollInterval is the fallback wait between polls when no notification arrives.
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
	// Retention prunes finished events, deliveries and attempts older than this; zero
	// keeps everything.
	Retention time.Duration
	// InstanceID names this process in logs and leases; empty picks a random one.
	InstanceID string
	// Metrics receives counts and timings from the pipeline; nil turns them off.
	Metrics *metrics.Metrics
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		HTTPTimeout:        10 * time.Second,
		Retry:              RetryPolicy{Schedule: DefaultRetrySchedule, Jitter: 0.2},
		Workers:            64,
		WebhookConcurrency: 8,
		PollInterval:       time.Second,
		ClaimBatch:         100,
		OutboxBatch:        100,
		DisableAfter:       120 * time.Hour,
		Retention:          720 * time.Hour,
	}
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	var errs []error
	if c.HTTPTimeout <= 0 || c.HTTPTimeout > 10*time.Minute {
		errs = append(errs, fmt.Errorf("HTTP timeout must be in (0, 10m], got %s", c.HTTPTimeout))
	}
	if c.Workers < 1 || c.Workers > 10000 {
		errs = append(errs, fmt.Errorf("workers must be in [1, 10000], got %d", c.Workers))
	}
	if c.WebhookConcurrency < 1 {
		errs = append(errs, fmt.Errorf("per-webhook concurrency must be at least 1, got %d", c.WebhookConcurrency))
	}
	if c.PollInterval <= 0 {
		errs = append(errs, fmt.Errorf("poll interval must be positive, got %s", c.PollInterval))
	}
	if c.ClaimBatch < 1 || c.OutboxBatch < 1 {
		errs = append(errs, errors.New("batch sizes must be at least 1"))
	}
	if c.Retry.Jitter < 0 || c.Retry.Jitter >= 1 {
		errs = append(errs, fmt.Errorf("retry jitter must be in [0, 1), got %g", c.Retry.Jitter))
	}
	if c.DisableAfter < 0 || c.Retention < 0 {
		errs = append(errs, errors.New("durations must not be negative"))
	}
	return errors.Join(errs...)
}

// leaseFor is how long a claimed delivery stays ours: the attempt's timeout plus room
// to record its result. A relay that dies mid-attempt loses the lease after this.
func (c Config) leaseFor() time.Duration {
	return c.HTTPTimeout + 15*time.Second
}
