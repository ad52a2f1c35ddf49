package schema_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/stdlib"

	"github.com/relayhq/relay/schema"
	"github.com/relayhq/relay/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

func TestConcurrentMigrationsOnAnEmptyDatabaseAllSucceedOnce(t *testing.T) {
	t.Parallel()
	db := testutil.NewEmptyDB(t)
	ctx := context.Background()
	sqlDB := stdlib.OpenDBFromPool(db.Pool)
	defer sqlDB.Close()
	if err := schema.Check(ctx, sqlDB); err == nil {
		t.Fatal("Check passed on an empty database")
	}

	// Four relays starting at once: all must succeed, and each version is applied once.
	var wg sync.WaitGroup
	applied := make([][]int64, 4)
	errs := make([]error, 4)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			applied[i], errs[i] = schema.Up(ctx, db.URL)
		}()
	}
	wg.Wait()
	total := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("migration %d: %v", i, err)
		}
		total += len(applied[i])
	}
	// Versions need not be contiguous (branches number their migrations apart), so
	// count the files.
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("migrations: %v %v", files, err)
	}
	if total != len(files) {
		t.Errorf("versions applied across the four runs = %d, want each of the %d once", total, len(files))
	}
	if err := schema.Check(ctx, sqlDB); err != nil {
		t.Fatalf("Check after migrating: %v", err)
	}
	// Idempotent: a fifth run applies nothing.
	if again, err := schema.Up(ctx, db.URL); err != nil || len(again) != 0 {
		t.Fatalf("re-run applied %v, err %v", again, err)
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM relay.event_types WHERE source = 'ghost'`).Scan(&n); err != nil || n != 29 {
		t.Fatalf("ghost events preloaded = %d (%v), want 29", n, err)
	}
}
