package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/relayhq/relay/relay/internal/apikey"
)

// KeysCmd manages Admin API keys and their integrations.
type KeysCmd struct {
	Create KeysCreateCmd `cmd:"" help:"Create an integration with one Admin API key and print the key (id:secret) once; --console makes a key that signs in to the console (/ui/) instead."`
	List   KeysListCmd   `cmd:"" help:"List Admin API keys and their integrations (never their secrets)."`
	Revoke KeysRevokeCmd `cmd:"" help:"Revoke a key's integration at once: its keys stop working and its webhooks are deleted (their audit trail stays)."`
}

type KeysCreateCmd struct {
	Name    string `name:"name" default:"" help:"The integration's name, e.g. the client or the person that will use it (default: Custom integration, or Console)."`
	Console bool   `name:"console" help:"Make a console key: it signs in to the operator console at /ui/ (every webhook, every delivery) and is refused by the Admin and audit APIs."`
	JSON    bool   `name:"json" help:"Print JSON."`
}

func (c *KeysCreateCmd) Run(ctx context.Context, g *Globals) error {
	return withKeys(ctx, g, func(ks *apikey.Store) error {
		create := ks.Create
		if c.Console {
			create = ks.CreateConsole
		}
		k, full, err := create(ctx, c.Name)
		if err != nil {
			return err
		}
		// The only time the secret exists outside the database (and, with a
		// key-encryption key, anywhere in clear): the operator copies it now.
		if c.JSON {
			return printJSON(struct {
				apikey.Key
				AdminAPIKey string `json:"admin_api_key"`
			}{k, full})
		}
		fmt.Println(full)
		storage := "in plaintext (set RELAY_KEY_ENCRYPTION_KEY to encrypt keys at rest)"
		if k.Encrypted {
			storage = "encrypted with RELAY_KEY_ENCRYPTION_KEY"
		}
		if c.Console {
			fmt.Fprintf(os.Stderr, "created console key %s (%q): it signs in to the console at /ui/ and nothing else; the key is shown only this once and stored %s\n",
				k.ID, k.Integration.Name, storage)
			return nil
		}
		fmt.Fprintf(os.Stderr, "created integration %q (%s) with Admin API key %s; the key is shown only this once and stored %s\n",
			k.Integration.Name, k.Integration.ID, k.ID, storage)
		return nil
	})
}

type KeysListCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *KeysListCmd) Run(ctx context.Context, g *Globals) error {
	return withKeys(ctx, g, func(ks *apikey.Store) error {
		keys, err := ks.List(ctx)
		if err != nil {
			return err
		}
		if c.JSON {
			if keys == nil {
				keys = []apikey.Key{}
			}
			return printJSON(keys)
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tINTEGRATION\tINTEGRATION ID\tTYPE\tCREATED\tLAST USED\tSTATUS\tSTORAGE")
		for _, k := range keys {
			status, storage := "active", "plaintext"
			if k.RevokedAt != nil {
				status = "revoked " + k.RevokedAt.UTC().Format(time.RFC3339)
			}
			if k.Encrypted {
				storage = "encrypted"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Integration.Name, k.Integration.ID, k.Integration.Type,
				k.CreatedAt.UTC().Format(time.RFC3339), timeOrDash(k.LastUsedAt), status, storage)
		}
		return tw.Flush()
	})
}

type KeysRevokeCmd struct {
	ID string `arg:"" help:"Key id (the part before the colon)."`
}

func (c *KeysRevokeCmd) Run(ctx context.Context, g *Globals) error {
	return withKeys(ctx, g, func(ks *apikey.Store) error {
		k, err := ks.Revoke(ctx, c.ID)
		if errors.Is(err, apikey.ErrNotFound) {
			return fmt.Errorf("no API key %q", c.ID)
		}
		if err != nil {
			return err
		}
		fmt.Printf("revoked API key %s and its integration %q (at %s); removed %d webhook(s)\n",
			k.ID, k.Integration.Name, k.RevokedAt.UTC().Format(time.RFC3339), k.WebhooksRemoved)
		return nil
	})
}

func withKeys(ctx context.Context, g *Globals, fn func(*apikey.Store) error) error {
	return g.withDB(ctx, func(db *database) error {
		ks, err := g.keyStore(db)
		if err != nil {
			return err
		}
		return fn(ks)
	})
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
