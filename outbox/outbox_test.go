package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/testutil"
)

func TestMain(m *testing.M) { testutil.Main(m) }

// stored returns the events in the order the relay reads them.
func stored(t *testing.T, db *testutil.DB) (ids, names, bodies []string) {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `SELECT id::text, event, data::text FROM relay.events ORDER BY transaction_id, "offset"`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, name, body string
		if err := rows.Scan(&id, &name, &body); err != nil {
			t.Fatal(err)
		}
		ids, names, bodies = append(ids, id), append(names, name), append(bodies, body)
	}
	return ids, names, bodies
}

func TestEmitWithPgxTxIsVisibleOnlyAfterCommit(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	tx, err := db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	id, err := outbox.Emit(ctx, tx, "post.added", json.RawMessage(`{"post":{"current":{"id":"1"},"previous":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if ids, _, _ := stored(t, db); len(ids) != 0 {
		t.Fatalf("event visible before commit")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	ids, names, bodies := stored(t, db)
	if len(ids) != 1 || ids[0] != id || names[0] != "post.added" {
		t.Fatalf("stored %v %v, want [%s] [post.added]", ids, names, id)
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(bodies[0]), &back); err != nil || back["post"] == nil {
		t.Fatalf("stored body %q", bodies[0])
	}
}

func TestEmitBatchWritesAllInOrderOrNone(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	events := []outbox.Event{
		{Name: "tag.added", Data: json.RawMessage(`{"tag":{"current":{"slug":"a"},"previous":{}}}`)},
		{Name: "site.changed", Data: json.RawMessage(`{}`)},
		{Name: "member.deleted", Data: json.RawMessage(`{"member":{"current":{},"previous":{"id":"m"}}}`)},
	}
	var ids []string
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) (err error) {
		ids, err = outbox.EmitBatch(ctx, tx, events)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	gotIDs, names, _ := stored(t, db)
	if strings.Join(gotIDs, ",") != strings.Join(ids, ",") || strings.Join(names, ",") != "tag.added,site.changed,member.deleted" {
		t.Fatalf("stored %v %v, returned %v", gotIDs, names, ids)
	}

	// One bad name fails the whole batch.
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := outbox.EmitBatch(ctx, tx, append(events, outbox.Event{Name: "nope", Data: json.RawMessage(`{}`)}))
		return err
	})
	if !errors.Is(err, outbox.ErrUnknownEvent) {
		t.Fatalf("batch with unknown name: %v", err)
	}
	if ids, _, _ := stored(t, db); len(ids) != 3 {
		t.Fatalf("failed batch left %d events, want the 3 from before", len(ids))
	}
}

func TestEmitWithDatabaseSQLTx(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	sqlDB, err := sql.Open("pgx", db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()

	tx, err := sqlDB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := outbox.EmitSQL(ctx, tx, "page.published", json.RawMessage(`{"page":{"current":{"title":"q\"uote\\"},"previous":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	ids, err := outbox.EmitBatchSQL(ctx, tx, []outbox.Event{
		{Name: "page.edited", Data: json.RawMessage(`{"page":{"current":{"title":"a,b{c}\"d"},"previous":{}}}`)},
		{Name: "page.deleted", Data: json.RawMessage(`{}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	got, names, bodies := stored(t, db)
	if len(got) != 3 || got[0] != id || got[1] != ids[0] || got[2] != ids[1] {
		t.Fatalf("stored %v, want [%s %v]", got, id, ids)
	}
	if names[1] != "page.edited" || !strings.Contains(bodies[1], `a,b{c}\"d`) {
		t.Fatalf("array literal mangled the data: %s %s", names[1], bodies[1])
	}

	// Rolled back: nothing stored.
	tx, err = sqlDB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.EmitSQL(ctx, tx, "page.added", json.RawMessage(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := stored(t, db); len(got) != 3 {
		t.Fatalf("rolled-back emit stored: %d events", len(got))
	}
}

func TestEmitRejectsBadInputClearly(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := outbox.Emit(ctx, tx, "post.added", json.RawMessage(`{not json`))
		return err
	})
	if !errors.Is(err, outbox.ErrInvalidJSON) {
		t.Fatalf("invalid JSON: %v", err)
	}
	big := `{"x":"` + strings.Repeat("a", 1<<20) + `"}`
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		_, err := outbox.Emit(ctx, tx, "post.added", json.RawMessage(big))
		return err
	})
	if !errors.Is(err, outbox.ErrPayloadTooLarge) {
		t.Fatalf("oversize payload: %v", err)
	}
}

// TestEmitNeedsOnlyExecuteOnRelayEmit: a CMS's database role needs USAGE on the schema
// and EXECUTE on relay.emit, nothing on the tables; a role without the grant is refused.
func TestEmitNeedsOnlyExecuteOnRelayEmit(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	role := "cms_" + strings.ReplaceAll(db.Name, "-", "_")
	other := role + "_other"
	for _, r := range []string{role, other} {
		if _, err := db.Pool.Exec(ctx, "CREATE ROLE "+pgx.Identifier{r}.Sanitize()); err != nil {
			t.Fatalf("create role (TEST_DATABASE_URL's user needs CREATEROLE): %v", err)
		}
		t.Cleanup(func() {
			_, _ = db.Pool.Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{r}.Sanitize())
			_, _ = db.Pool.Exec(context.Background(), "DROP ROLE "+pgx.Identifier{r}.Sanitize())
		})
		if _, err := db.Pool.Exec(ctx, "GRANT USAGE ON SCHEMA relay TO "+pgx.Identifier{r}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.Pool.Exec(ctx, "GRANT EXECUTE ON FUNCTION relay.emit(text, jsonb) TO "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	emitAs := func(r string) error {
		return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{r}.Sanitize()); err != nil {
				return err
			}
			_, err := outbox.Emit(ctx, tx, "post.added", json.RawMessage(`{"post":{"current":{"id":"1"},"previous":{}}}`))
			return err
		})
	}
	if err := emitAs(role); err != nil {
		t.Fatalf("a role with EXECUTE on relay.emit could not emit: %v", err)
	}
	if err := emitAs(other); err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("a role without the grant: err = %v, want permission denied", err)
	}
	if ids, _, _ := stored(t, db); len(ids) != 1 {
		t.Fatalf("%d events stored, want 1", len(ids))
	}
}
