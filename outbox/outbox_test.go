package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/relayhq/relay/outbox"
	"github.com/relayhq/relay/testutil"
)

// TestMain gives the runnable examples a database of their own, as DATABASE_URL, with
// the CMS table they change.
func TestMain(m *testing.M) {
	ctx := context.Background()
	db, drop, err := testutil.CreateDB(ctx)
	if err == nil {
		_, err = db.Pool.Exec(ctx, `CREATE TABLE posts (id int PRIMARY KEY, title text, status text);
			INSERT INTO posts VALUES (1, 'Hello', 'draft')`)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "outbox examples: %v\n", err)
		os.Exit(1)
	}
	os.Setenv("DATABASE_URL", db.URL)
	testutil.Main(m, drop)
}

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
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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
	t.Parallel()
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
	if _, err := db.Pool.Exec(ctx, "GRANT EXECUTE ON FUNCTION relay.emit(text, text, text), relay.emit(text, jsonb, text) TO "+pgx.Identifier{role}.Sanitize()); err != nil {
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

// A CMS role, or an SQL injection in the CMS, can emit only what relay.emit offers: no
// stripe.* event (only the relay's Stripe endpoint creates those, and the relay signs
// them as Stripe's for Ghost), no way around relay.emit to the internal writer or the
// outbox table, so no event can claim a source other than 'emit'.
func TestCMSRoleCannotCreateStripeEvents(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	role := "cms_" + db.Name
	if _, err := db.Pool.Exec(ctx, "CREATE ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatalf("create role: %v", err)
	}
	t.Cleanup(func() {
		_, _ = db.Pool.Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{role}.Sanitize())
		_, _ = db.Pool.Exec(context.Background(), "DROP ROLE "+pgx.Identifier{role}.Sanitize())
	})
	for _, g := range []string{"GRANT USAGE ON SCHEMA relay TO ", "GRANT EXECUTE ON FUNCTION relay.emit(text, text, text), relay.emit(text, jsonb, text) TO "} {
		if _, err := db.Pool.Exec(ctx, g+pgx.Identifier{role}.Sanitize()); err != nil {
			t.Fatal(err)
		}
	}
	asCMS := func(fn func(tx pgx.Tx) error) error {
		return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
				return err
			}
			return fn(tx)
		})
	}
	forged := `{"id":"evt_FORGED","object":"event","type":"checkout.session.completed"}`
	for _, q := range []string{
		`SELECT relay.emit('stripe.checkout.session.completed', '` + forged + `')`,
		`SELECT relay.emit('stripe.checkout.session.completed', '` + forged + `'::jsonb)`,
	} {
		err := asCMS(func(tx pgx.Tx) error { _, err := tx.Exec(ctx, q); return err })
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22023" || !strings.Contains(pgErr.Message, "Stripe") {
			t.Errorf("%s: err = %v, want SQLSTATE 22023 naming Stripe", q, err)
		}
	}
	err := asCMS(func(tx pgx.Tx) error {
		_, err := outbox.Emit(ctx, tx, "stripe.checkout.session.completed", json.RawMessage(forged))
		return err
	})
	if !errors.Is(err, outbox.ErrUnknownEvent) {
		t.Errorf("outbox.Emit of a stripe.* name: err = %v, want ErrUnknownEvent", err)
	}
	for _, q := range []string{
		`SELECT relay.emit_internal('stripe.checkout.session.completed', '` + forged + `', 'stripe')`,
		`INSERT INTO relay.outbox ("uuid", payload, metadata, transaction_id, source)
		 VALUES (gen_random_uuid()::text, '{}', '{"event":"stripe.charge.refunded"}', pg_current_xact_id(), 'stripe')`,
	} {
		err := asCMS(func(tx pgx.Tx) error { _, err := tx.Exec(ctx, q); return err })
		if err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Errorf("%s: err = %v, want permission denied", q, err)
		}
	}
	// Registering a stripe.* name would not help either.
	if _, err := db.Pool.Exec(ctx, `INSERT INTO relay.event_types (name) VALUES ('stripe.forged')`); err == nil {
		t.Errorf("a stripe.* name was registered as a custom event")
	}
	if ids, _, _ := stored(t, db); len(ids) != 0 {
		t.Fatalf("%d events stored, want none", len(ids))
	}
}

// What the CMS wrote is what receivers get: every writer keeps Data's bytes (key order,
// spaces, number spellings, unicode escapes), where jsonb would rewrite them.
func TestEveryWriterKeepsTheBodyByteForByte(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	bodies := []string{
		`{"b":1,"a":2}`,
		`{ "post" : {"current":{"title":"caf\u00e9 ✓","n":1.50e2,"z":null} , "previous":{}} }`,
		"[1,\n  2]",
	}
	sqlDB, err := sql.Open("pgx", db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	writers := map[string]func(body string) error{
		"outbox.Emit": func(body string) error {
			return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
				_, err := outbox.Emit(ctx, tx, "post.added", json.RawMessage(body))
				return err
			})
		},
		"outbox.EmitBatch": func(body string) error {
			return pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
				_, err := outbox.EmitBatch(ctx, tx, []outbox.Event{{Name: "post.added", Data: json.RawMessage(body)}})
				return err
			})
		},
		"outbox.EmitSQL": func(body string) error {
			tx, err := sqlDB.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := outbox.EmitSQL(ctx, tx, "post.added", json.RawMessage(body)); err != nil {
				_ = tx.Rollback()
				return err
			}
			return tx.Commit()
		},
		"outbox.EmitBatchSQL": func(body string) error {
			tx, err := sqlDB.BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if _, err := outbox.EmitBatchSQL(ctx, tx, []outbox.Event{{Name: "post.added", Data: json.RawMessage(body)}}); err != nil {
				_ = tx.Rollback()
				return err
			}
			return tx.Commit()
		},
		"SQL literal": func(body string) error {
			_, err := db.Pool.Exec(ctx, `SELECT relay.emit('post.added', '`+strings.ReplaceAll(body, "'", "''")+`')`)
			return err
		},
	}
	for name, write := range writers {
		for _, body := range bodies {
			if err := write(body); err != nil {
				t.Fatalf("%s(%q): %v", name, body, err)
			}
			_, _, got := stored(t, db)
			if last := got[len(got)-1]; last != body {
				t.Errorf("%s stored %q, want the bytes given, %q", name, last, body)
			}
		}
	}
	// The jsonb form normalises, as documented.
	if _, err := db.Pool.Exec(ctx, `SELECT relay.emit('post.added', '{"b":1,"a":2}'::jsonb)`); err != nil {
		t.Fatal(err)
	}
	if _, _, got := stored(t, db); got[len(got)-1] != `{"a": 2, "b": 1}` {
		t.Errorf("jsonb form stored %q", got[len(got)-1])
	}
	// The text form still refuses what is not JSON, with 22023.
	_, err = db.Pool.Exec(ctx, `SELECT relay.emit('post.added', '{"a":')`)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "22023" {
		t.Errorf("invalid JSON text: err = %v, want SQLSTATE 22023", err)
	}
}

// A connection that emits in quick succession wakes the relays at most once every
// 50 ms (a NOTIFYing commit serializes on PostgreSQL's global notify lock, which cost
// the CMS half its write throughput); a rolled-back emit sent no notification, so the
// next one does.
func TestEmitNotifiesAtMostOnceEvery50msPerConnection(t *testing.T) {
	db := testutil.NewDB(t)
	ctx := context.Background()
	listener, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close(ctx)
	if _, err := listener.Exec(ctx, "LISTEN relay_outbox"); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	emitTx := func(commit bool) {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := outbox.Emit(ctx, tx, "post.added", json.RawMessage(`{}`)); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	notifications := func() int {
		n := 0
		for {
			wait, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
			_, err := listener.WaitForNotification(wait)
			cancel()
			if err != nil {
				return n
			}
			n++
		}
	}

	emitTx(false) // rolled back: no notification, and the connection's clock goes back
	emitTx(true)
	if n := notifications(); n != 1 {
		t.Fatalf("after a rolled-back emit and a committed one: %d notifications, want 1", n)
	}
	start := time.Now()
	const events = 40
	for range events {
		emitTx(true)
	}
	elapsed := time.Since(start)
	// One notification per started 50 ms at most (the first may fall in the window of
	// the emit before), however fast the commits come.
	if n, most := notifications(), int(elapsed/(50*time.Millisecond))+2; n > most {
		t.Errorf("%d transactions in %s sent %d notifications, want at most %d", events, elapsed, n, most)
	}
}

// QueueEmit puts the emit in the CMS's own batch: one round trip for the change and its
// event, committed or rolled back together; a bad name fails the batch.
func TestQueueEmitRidesInTheCMSsBatch(t *testing.T) {
	t.Parallel()
	db := testutil.NewDB(t)
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, `CREATE TABLE cms_posts (id int PRIMARY KEY, status text); INSERT INTO cms_posts VALUES (1, 'draft')`); err != nil {
		t.Fatal(err)
	}
	var id string
	err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`UPDATE cms_posts SET status = 'published' WHERE id = 1`)
		if err := outbox.QueueEmit(b, "post.published", json.RawMessage(`{"post":{"current":{"id":"1"},"previous":{}}}`), &id); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil || len(id) != 36 {
		t.Fatalf("batch: id %q, %v", id, err)
	}
	if ids, _, _ := stored(t, db); len(ids) != 1 || ids[0] != id {
		t.Fatalf("stored %v, want [%s]", ids, id)
	}
	err = pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`UPDATE cms_posts SET status = 'draft' WHERE id = 1`)
		if err := outbox.QueueEmit(b, "post.exploded", json.RawMessage(`{}`), nil); err != nil {
			return err
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if !errors.Is(err, outbox.ErrUnknownEvent) {
		t.Fatalf("unknown event in a batch: %v, want ErrUnknownEvent", err)
	}
	var status string
	if err := db.Pool.QueryRow(ctx, `SELECT status FROM cms_posts`).Scan(&status); err != nil || status != "published" {
		t.Errorf("the failed batch's change was kept: status %q (%v)", status, err)
	}
	if err := outbox.QueueEmit(&pgx.Batch{}, "post.added", json.RawMessage(`{`), nil); !errors.Is(err, outbox.ErrInvalidJSON) {
		t.Errorf("invalid JSON: %v", err)
	}
}
