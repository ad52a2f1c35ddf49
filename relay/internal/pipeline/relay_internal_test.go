package pipeline

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/testutil"
)

// TestHotPathPoolsPickTheirPlans: the claim's connections plan each execution, the
// fan-out's and the record's keep one generic plan that reaches rows by key, and none
// compiles plans (see claimPool); the outbox reader's commits do not wait for the disk
// (see outboxReaderPool), and only its.
func TestHotPathPoolsPickTheirPlans(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	claims, err := claimPool(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	defer claims.Close()
	keyed, err := keyedPool(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	defer keyed.Close()
	reader, err := outboxReaderPool(ctx, db.Pool)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	for _, tc := range []struct {
		name string
		pool interface {
			QueryRow(context.Context, string, ...any) pgx.Row
		}
		plans, seqscan, jit, commit string
	}{
		{"claim", claims, "force_custom_plan", "on", "off", "server"},
		{"fan-out and record", keyed, "force_generic_plan", "off", "off", "server"},
		// Only the outbox reader's offset commits skip the flush: deliveries and their
		// results are durable before anything is sent or reported. (The test cluster
		// may itself run without flushing, so the check is who set it: "client" is the
		// pool's own setting, anything else the server's.)
		{"outbox reader", reader, "auto", "on", "on", "off by the client"},
	} {
		var plans, seqscan, jit, commit string
		if err := tc.pool.QueryRow(ctx, `SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan'), current_setting('jit'),
				CASE WHEN source = 'client' THEN setting || ' by the client' ELSE 'server' END
			FROM pg_settings WHERE name = 'synchronous_commit'`).
			Scan(&plans, &seqscan, &jit, &commit); err != nil {
			t.Fatal(err)
		}
		if plans != tc.plans || seqscan != tc.seqscan || jit != tc.jit || commit != tc.commit {
			t.Errorf("%s pool: plan_cache_mode %s, enable_seqscan %s, jit %s, synchronous_commit %s; want %s, %s, %s, %s",
				tc.name, plans, seqscan, jit, commit, tc.plans, tc.seqscan, tc.jit, tc.commit)
		}
	}
}
