package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/outbox"
)

// EmitCmd writes one event in its own transaction, as a CMS would in its own.
type EmitCmd struct {
	Event string `arg:"" help:"Event name, e.g. post.published."`
	Data  string `name:"data" default:"{}" help:"The JSON body receivers get ('-' reads standard input)."`
}

func (c *EmitCmd) Run(ctx context.Context, g *Globals) error {
	data := []byte(c.Data)
	if c.Data == "-" {
		var err error
		if data, err = readAllLimited(os.Stdin, 1<<20+1); err != nil {
			return fmt.Errorf("read --data from stdin: %w", err)
		}
	}
	if !json.Valid(data) {
		return errors.New("--data is not valid JSON")
	}
	return g.withDB(ctx, func(db *database) error {
		var id string
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) (err error) {
			id, err = outbox.Emit(ctx, tx, c.Event, data)
			return err
		})
		if err != nil {
			return err
		}
		fmt.Println(id)
		return nil
	})
}
