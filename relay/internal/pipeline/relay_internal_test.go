package pipeline

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/testutil"
)

// TestHotPathPoolsPickTheirPlans: the claim's connections plan each execution, the
// fan-out's and the record's keep one generic plan that reaches rows by key, and none
// compiles plans (see claimPool).
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
	for _, tc := range []struct {
		name string
		pool interface {
			QueryRow(context.Context, string, ...any) pgx.Row
		}
		plans, seqscan, jit string
	}{
		{"claim", claims, "force_custom_plan", "on", "off"},
		{"fan-out and record", keyed, "force_generic_plan", "off", "off"},
	} {
		var plans, seqscan, jit string
		if err := tc.pool.QueryRow(ctx, `SELECT current_setting('plan_cache_mode'), current_setting('enable_seqscan'), current_setting('jit')`).
			Scan(&plans, &seqscan, &jit); err != nil {
			t.Fatal(err)
		}
		if plans != tc.plans || seqscan != tc.seqscan || jit != tc.jit {
			t.Errorf("%s pool: plan_cache_mode %s, enable_seqscan %s, jit %s; want %s, %s, %s", tc.name, plans, seqscan, jit, tc.plans, tc.seqscan, tc.jit)
		}
	}
}
