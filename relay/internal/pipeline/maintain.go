package pipeline

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/metrics"
	"github.com/relayhq/relay/relay/internal/store"
)

// maintainer runs the periodic housekeeping: disabling webhooks that have failed for
// too long, pruning finished history past the retention window, and rolling the
// per-minute statistics up into hours (what the console's 24-hour figures read). Every statement is
// short and bounded, so it never holds up delivery; several relays may run it at once.
type maintainer struct {
	db  store.Querier
	cfg Config
	log zerolog.Logger
}

func (m maintainer) interval() time.Duration {
	iv := time.Minute
	if d := m.cfg.DisableAfter; d > 0 {
		iv = min(iv, d/10)
	}
	if d := m.cfg.Retention; d > 0 {
		iv = min(iv, d/10)
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

// prune deletes finished history older than the retention window; Stripe's event ids
// are kept at least as long as Stripe resends (store.StripeResendWindow), whatever the
// retention.
func (m maintainer) prune(ctx context.Context, now time.Time) (store.PruneStats, error) {
	if m.cfg.Retention <= 0 {
		return store.PruneStats{}, nil
	}
	st, err := store.Prune(ctx, m.db, now.Add(-m.cfg.Retention), now.Add(-max(m.cfg.Retention, store.StripeResendWindow)))
	if st.Deliveries > 0 || st.Events > 0 || st.StripeEvents > 0 {
		m.log.Info().Int64("deliveries", st.Deliveries).Int64("events", st.Events).Int64("stripe_events", st.StripeEvents).
			Dur("retention", m.cfg.Retention).Msg("pruned history past retention")
	}
	return st, err
}
