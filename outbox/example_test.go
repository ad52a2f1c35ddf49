package outbox_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/relayhq/relay/outbox"
)

// The CMS writes the event in the transaction that makes the change: if it rolls back,
// the event never existed; if it commits, the relay delivers it to every webhook
// subscribed to post.published.
func ExampleEmit() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	var eventID string
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE posts SET status = 'published' WHERE id = $1`, 1); err != nil {
			return err
		}
		body := json.RawMessage(`{"post":{"current":{"id":"1","status":"published"},"previous":{"status":"draft"}}}`)
		eventID, err = outbox.Emit(ctx, tx, "post.published", body)
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	// Receivers get eventID as the webhook-id header of every attempt.
	fmt.Println("emitted an event with a", len(eventID), "character id")
	// Output: emitted an event with a 36 character id
}

// Several events of one transaction go in one statement; a name the relay does not
// know fails the whole batch, which errors.Is tells apart.
func ExampleEmitBatch() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := outbox.EmitBatch(ctx, tx, []outbox.Event{
			{Name: "tag.added", Data: json.RawMessage(`{"tag":{"current":{"id":"t1"},"previous":{}}}`)},
			{Name: "post.exploded", Data: json.RawMessage(`{}`)},
		})
		return err
	})
	fmt.Println("unknown event refused:", errors.Is(err, outbox.ErrUnknownEvent))
	// Output: unknown event refused: true
}

// With database/sql (any PostgreSQL driver), EmitSQL is the same call.
func ExampleEmitSQL() {
	ctx := context.Background()
	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	if _, err := tx.ExecContext(ctx, `UPDATE posts SET title = $1 WHERE id = $2`, "Hello again", 1); err != nil {
		log.Fatal(err)
	}
	body := json.RawMessage(`{"post":{"current":{"id":"1","title":"Hello again"},"previous":{"title":"Hello"}}}`)
	if _, err := outbox.EmitSQL(ctx, tx, "post.published.edited", body); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("committed")
	// Output: committed
}
