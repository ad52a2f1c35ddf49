package pipeline

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"
)

// vacuumer keeps the claim fast while deliveries stream through. A finished delivery
// leaves a dead entry at the head of the pending-deliveries index until VACUUM removes
// it, and every claim walks those entries: measured on a 100,000-event drain, a claim
// read ~700 buffers (2.8 ms) and the drain ran at 1.7k/s; one VACUUM (0.2 s) took it back
// to 6-9k/s. Autovacuum wakes once a minute at best, so the relay vacuums the table
// itself after enough of its own deliveries finished. One relay at a time (an advisory
// lock), and never more often than vacuumEvery.
type vacuumer struct {
	pool *pgxpool.Pool
	log  zerolog.Logger
	rec  *recorder
	last int64 // rec.finished at the last vacuum
}

const (
	vacuumAfter = 10_000 // finished deliveries since the last vacuum
	vacuumEvery = 2 * time.Second
	vacuumLock  = 0x72656c61795f76 // "relay_v"
)

func (v *vacuumer) run(ctx context.Context) error {
	t := time.NewTicker(vacuumEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n := v.rec.finished.Load()
		if n-v.last < vacuumAfter {
			continue
		}
		v.last = n
		start := time.Now()
		ran, err := v.vacuum(ctx)
		if err != nil {
			if ctx.Err() == nil {
				v.log.Warn().Err(err).Msg("vacuum of relay.deliveries failed; autovacuum will do it later")
			}
			continue
		}
		if ran {
			v.log.Debug().Dur("took", time.Since(start)).Msg("vacuumed relay.deliveries")
		}
	}
}

// vacuum runs VACUUM on a connection of its own unless another relay is already at it.
func (v *vacuumer) vacuum(ctx context.Context) (bool, error) {
	conn, err := v.pool.Acquire(ctx)
	if err != nil {
		return false, err
	}
	defer conn.Release()
	var got bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(vacuumLock)).Scan(&got); err != nil || !got {
		return false, err
	}
	defer func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, int64(vacuumLock))
	}()
	// INDEX_CLEANUP ON: the point is the index; AUTO may skip it when few pages changed.
	_, err = conn.Exec(ctx, `VACUUM (INDEX_CLEANUP ON) relay.deliveries`)
	return err == nil, err
}
