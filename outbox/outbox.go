// Package outbox is what a CMS imports to write relay events inside its own
// transactions. An event written with a transaction that later rolls back is never
// delivered; one written with a transaction that commits is delivered.
//
// The package depends on pgx and database/sql only: it is a thin, typed wrapper over
// the SQL function relay.emit, which any language can call directly:
//
//	SELECT relay.emit('post.published', '{"post":{"current":{...},"previous":{}}}');
//	SELECT relay.emit('order.paid', '{"order":42}', 'order-42'); -- with an ordering key
package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Event is one event to emit: Name is a registered event name (a Ghost event such as
// "post.published", or one registered with `relay events register`), and Data is the
// JSON body receivers get, byte for byte: it is stored as the text given, never
// re-serialised. stripe.<type> names are refused: only the relay's Stripe endpoint
// creates Stripe events.
//
// Key is the event's ordering key: an ordered webhook gets the events of one key one at a
// time, in commit order. Leave it empty for Ghost-shaped data ({"post": {"current":
// {"id": …}}}), whose key is the resource's id; set it (1 to 200 characters) to order
// events of your own by what they are about, such as an order number.
type Event struct {
	Name string
	Data json.RawMessage
	Key  string
}

// ErrUnknownEvent is returned (wrapped) when PostgreSQL rejects an event name (or data
// that is not JSON) with SQLSTATE 22023; test it with errors.Is.
var ErrUnknownEvent = errors.New("outbox: unknown event name or invalid data")

// ErrPayloadTooLarge is returned (wrapped) when data exceeds the relay's size limit.
var ErrPayloadTooLarge = errors.New("outbox: event data too large")

// ErrInvalidJSON is returned when Data is not valid JSON; nothing is sent to the database.
var ErrInvalidJSON = errors.New("outbox: event data is not valid JSON")

// ErrInvalidKey is returned when an Event's Key is longer than 200 characters; nothing
// is sent to the database.
var ErrInvalidKey = errors.New("outbox: an ordering key is at most 200 characters")

// MaxKeyLength is the longest ordering key, in characters.
const MaxKeyLength = 200

const (
	// The text form of relay.emit keeps Data's bytes; the jsonb form would reorder keys
	// and rewrite spaces.
	emitSQL      = `SELECT relay.emit($1::text, $2::text)`
	emitBatchSQL = `SELECT relay.emit(e.name, e.data, nullif(e.key, ''))
  FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS e(name, data, key, n)
 ORDER BY e.n`
)

// Emit writes one event in tx and returns its id, which receivers see as the
// webhook-id header. Nothing is visible to the relay until tx commits.
func Emit(ctx context.Context, tx pgx.Tx, name string, data json.RawMessage) (string, error) {
	if err := validate(data); err != nil {
		return "", err
	}
	var id string
	if err := tx.QueryRow(ctx, emitSQL, name, string(data)).Scan(&id); err != nil {
		return "", wrap(name, err)
	}
	return id, nil
}

// EmitBatch writes many events in tx with one statement and returns their ids in the
// order given. Either all are written or, on error, none.
func EmitBatch(ctx context.Context, tx pgx.Tx, events []Event) ([]string, error) {
	names, datas, keys, err := columns(events)
	if err != nil || len(events) == 0 {
		return nil, err
	}
	rows, err := tx.Query(ctx, emitBatchSQL, names, datas, keys)
	if err != nil {
		return nil, wrap("", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, wrap("", err)
	}
	return ids, nil
}

// QueueEmit queues the emit of one event on b, a pgx.Batch the CMS sends in its own
// transaction (tx.SendBatch) with its own statements, so that the event costs no round
// trip of its own. After the batch ran, *id holds the event's id; an error of the emit
// (ErrUnknownEvent, ErrPayloadTooLarge, as Emit returns) is returned when the batch's
// results are read or closed, and then the transaction must roll back. Invalid JSON is
// refused at once, with nothing queued.
func QueueEmit(b *pgx.Batch, name string, data json.RawMessage, id *string) error {
	if err := validate(data); err != nil {
		return err
	}
	b.Queue(emitSQL, name, string(data)).QueryRow(func(row pgx.Row) error {
		var got string
		if err := row.Scan(&got); err != nil {
			return wrap(name, err)
		}
		if id != nil {
			*id = got
		}
		return nil
	})
	return nil
}

// EmitSQL is Emit for a database/sql transaction (any driver that speaks to
// PostgreSQL, e.g. pgx's stdlib or lib/pq).
func EmitSQL(ctx context.Context, tx *sql.Tx, name string, data json.RawMessage) (string, error) {
	if err := validate(data); err != nil {
		return "", err
	}
	var id string
	if err := tx.QueryRowContext(ctx, emitSQL, name, string(data)).Scan(&id); err != nil {
		return "", wrap(name, err)
	}
	return id, nil
}

// EmitBatchSQL is EmitBatch for a database/sql transaction. Arrays are passed as
// PostgreSQL array literals so that the call works with any PostgreSQL driver.
func EmitBatchSQL(ctx context.Context, tx *sql.Tx, events []Event) ([]string, error) {
	names, datas, keys, err := columns(events)
	if err != nil || len(events) == 0 {
		return nil, err
	}
	rows, err := tx.QueryContext(ctx, emitBatchSQL, arrayLiteral(names), arrayLiteral(datas), arrayLiteral(keys))
	if err != nil {
		return nil, wrap("", err)
	}
	defer rows.Close()
	ids := make([]string, 0, len(events))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, wrap("", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, wrap("", err)
	}
	return ids, nil
}

func validate(data json.RawMessage) error {
	if !json.Valid(data) {
		return ErrInvalidJSON
	}
	return nil
}

func columns(events []Event) (names, datas, keys []string, err error) {
	names = make([]string, len(events))
	datas = make([]string, len(events))
	keys = make([]string, len(events))
	for i, e := range events {
		if err := validate(e.Data); err != nil {
			return nil, nil, nil, fmt.Errorf("event %d (%s): %w", i, e.Name, err)
		}
		if utf8.RuneCountInString(e.Key) > MaxKeyLength {
			return nil, nil, nil, fmt.Errorf("event %d (%s): %w", i, e.Name, ErrInvalidKey)
		}
		names[i], datas[i], keys[i] = e.Name, string(e.Data), e.Key
	}
	return names, datas, keys, nil
}

// arrayLiteral renders a text[] literal with every element quoted and escaped, so no
// element can break out of it whatever it contains.
func arrayLiteral(elems []string) string {
	buf := make([]byte, 0, 16*len(elems))
	buf = append(buf, '{')
	for i, e := range elems {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, '"')
		for j := 0; j < len(e); j++ {
			if e[j] == '"' || e[j] == '\\' {
				buf = append(buf, '\\')
			}
			buf = append(buf, e[j])
		}
		buf = append(buf, '"')
	}
	return string(append(buf, '}'))
}

func wrap(name string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "22023":
			return fmt.Errorf("%w: %w", ErrUnknownEvent, err)
		case "54000":
			return fmt.Errorf("%w: %w", ErrPayloadTooLarge, err)
		}
	}
	if name != "" {
		return fmt.Errorf("outbox: emit %q: %w", name, err)
	}
	return fmt.Errorf("outbox: emit batch: %w", err)
}
