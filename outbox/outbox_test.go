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
