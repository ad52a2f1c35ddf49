package pipeline

import (
	"context"
	"time"

	"github.com/relayhq/relay/relay/internal/store"
)

// Prune runs one retention pass now, as the maintainer does every interval.
func (r *Relay) Prune(ctx context.Context) (store.PruneStats, error) {
	return maintainer{db: r.pool, cfg: r.cfg, log: r.log}.prune(ctx, time.Now())
}
