package pipeline

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/metrics"
	"github.com/relayhq/relay/relay/internal/store"
)

// maintainer runs the periodic housekeeping: disabling webhooks that have failed for
// too long, pruning history past the retention windows, and rolling the per-minute
// statistics up into hours (what the console's 24-hour figures read). Every statement
// is short and bounded, so it never holds up delivery; several relays may run it at once.
type maintainer struct {
	db  store.Beginner
	cfg Config
	log zerolog.Logger
}

// heldSweepAge leaves the deliveries held in the last moments to their fan-out's own
// second look, which is quicker.
const heldSweepAge = 10 * time.Second

func (m maintainer) interval() time.Duration {
	iv := time.Minute
	if d := m.cfg.DisableAfter; d > 0 {
		iv = min(iv, d/10)
	}
	for _, d := range []time.Duration{m.cfg.Retention, m.cfg.EventRetention} {
		if d > 0 {
			iv = min(iv, d/10)
		}
	}
	return max(iv, 100*time.Millisecond)
}

func (m maintainer) run(ctx context.Context) error {
	t := time.NewTicker(m.interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := m.disableFailing(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn().Err(err).Msg("auto-disable check failed")
		}
		if _, err := m.prune(ctx, time.Now()); err != nil && ctx.Err() == nil {
			m.log.Warn().Err(err).Msg("retention prune failed")
		}
		if n, err := store.SweepHeld(ctx, m.db, heldSweepAge); err != nil && ctx.Err() == nil {
			m.log.Warn().Err(err).Msg("sweep of held deliveries failed")
		} else if n > 0 {
			m.log.Warn().Int("deliveries", n).Msg("let go deliveries of ordered keys held with nothing in front of them (a relay stopped between a fan-out and its second look)")
		}
		if _, err := store.RollUpHours(ctx, m.db, time.Now()); err != nil && ctx.Err() == nil {
			m.log.Warn().Err(err).Msg("rolling up webhook statistics failed")
		}
	}
}

func (m maintainer) disableFailing(ctx context.Context) error {
	if m.cfg.DisableAfter <= 0 {
		return nil
	}
	disabled, err := store.DisableFailing(ctx, m.db, m.cfg.DisableAfter)
	for _, d := range disabled {
		m.cfg.Metrics.WebhookDisabled(metrics.DisabledFailing, d.Cancelled)
		m.log.Warn().Str("webhook_id", d.WebhookID).Str("reason", d.Reason).Int64("cancelled_deliveries", d.Cancelled).Msg("webhook disabled")
	}
	return err
}

// prune deletes finished deliveries older than the retention window and events older
// than the event retention window (store.Prune says which may go); Stripe's event ids
// are kept at least as long as Stripe resends (store.StripeResendWindow), whatever the
// retention. A zero window keeps what it covers.
func (m maintainer) prune(ctx context.Context, now time.Time) (store.PruneStats, error) {
	var c store.Cutoffs
	if d := m.cfg.Retention; d > 0 {
		c.Deliveries = now.Add(-d)
		c.StripeIDs = now.Add(-max(d, store.StripeResendWindow))
	}
	if d := m.cfg.EventRetention; d > 0 {
		c.Events = now.Add(-d)
	}
	if c == (store.Cutoffs{}) {
		return store.PruneStats{}, nil
	}
	st, err := store.Prune(ctx, m.db, c)
	if st.Deliveries > 0 || st.Events > 0 || st.StripeEvents > 0 {
		m.log.Info().Int64("deliveries", st.Deliveries).Int64("events", st.Events).Int64("stripe_events", st.StripeEvents).
			Dur("retention", m.cfg.Retention).Dur("event_retention", m.cfg.EventRetention).Msg("pruned history past retention")
	}
	return st, err
}
