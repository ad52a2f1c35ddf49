package cli

import (
	"context"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/audit"
	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/internal/webhook"
)

// WebhooksCmd manages subscriptions.
type WebhooksCmd struct {
	Add  WebhooksAddCmd  `cmd:"" help:"Subscribe a URL to an event (or post.*, *)."`
	List WebhooksListCmd `cmd:"" help:"List webhooks (secrets masked)."`
	Edit WebhooksEditCmd `cmd:"" help:"Change a webhook."`
	Rm   WebhooksRmCmd   `cmd:"" help:"Delete a webhook (its audit trail stays; pending deliveries are cancelled)."`
}

type WebhooksAddCmd struct {
	Event         string  `arg:"" help:"Event name, trailing wildcard (post.*) or *."`
	TargetURL     string  `arg:"" name:"target-url" help:"Absolute http(s) URL."`
	Name          *string `name:"name" help:"A label."`
	Secret        *string `name:"secret" help:"Signing secret; 'generate' makes a whsec_ secret and prints it once."`
	IntegrationID *string `name:"integration-id" help:"Integration (see relay keys list) that may then manage it through the Admin API; default none: the operator's, managed with this CLI only."`
	// Only here, never through the Admin API: the mark decides who receives a signature
	// Ghost trusts as Stripe's.
	StripeSignature bool   `name:"stripe-signature" help:"Add Stripe-Signature (keyed with WEBHOOK_SECRET) to the Stripe events this webhook gets: for Ghost's /members/webhooks/stripe/. Only for a stripe.* or stripe.<type> webhook."`
	Ordered         bool   `name:"ordered" help:"Deliver the events of each ordering key (the post, page, tag or member they are about, or the key given at emit) one at a time, in commit order; a failed one holds back the later ones of its key until redelivered or skipped."`
	ReplayFrom      string `name:"replay-from" help:"Also deliver the kept events it matches since this time (RFC 3339, a date, or 7d, 720h), those from before it existed: a replay (relay replays)."`
	JSON            bool   `name:"json" help:"Print JSON."`
}

func (c *WebhooksAddCmd) Run(ctx context.Context, g *Globals) error {
	generated, err := generateIfAsked(&c.Secret)
	if err != nil {
		return err
	}
	var since time.Time
	if c.ReplayFrom != "" {
		if since, err = audit.ParseTime(c.ReplayFrom, time.Now()); err != nil {
			return fmt.Errorf("--replay-from: %w", err)
		}
	}
	return g.withDB(ctx, func(db *database) error {
		var w webhook.Webhook
		var rp *store.Replay
		// One transaction: no fan-out sees the webhook without its replay (for an ordered
		// webhook, the replay's fence holds its live events behind their history).
		err := pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error {
			var err error
			w, err = webhook.Store{Pool: tx}.Add(ctx, webhook.Input{Event: &c.Event, TargetURL: &c.TargetURL, Name: optional(c.Name),
				Secret: optional(c.Secret), IntegrationID: c.IntegrationID, StripeSignature: &c.StripeSignature, Ordered: &c.Ordered})
			if err != nil || since.IsZero() {
				return err
			}
			r, err := store.CreateReplayIn(ctx, tx, store.ReplayRequest{WebhookID: w.ID, Since: since, RequestedBy: "cli"})
			rp = &r
			return err
		})
		if err != nil {
			return err
		}
		shown := w.Masked()
		if generated {
			// The one time the generated secret is shown: the operator must copy it now.
			shown = w
		}
		if c.JSON {
			return printJSON(struct {
				webhook.Webhook
				Replay *store.Replay `json:"replay,omitempty"`
			}{shown, rp})
		}
		fmt.Printf("added webhook %s: %s -> %s\n", w.ID, w.Event, webhook.MaskURL(w.TargetURL))
		if generated {
			fmt.Printf("secret (shown once): %s\n", *w.Secret)
		}
		if rp != nil {
			fmt.Printf("replay %d: the events since %s, delivered by the running relays (follow it: relay replays show %d)\n",
				rp.ID, rp.Since.UTC().Format(time.RFC3339), rp.ID)
		}
		return nil
	})
}

type WebhooksListCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

func (c *WebhooksListCmd) Run(ctx context.Context, g *Globals) error {
	return withStore(ctx, g, func(st webhook.Store) error {
		ws, err := st.List(ctx)
		if err != nil {
			return err
		}
		for i := range ws {
			ws[i] = ws[i].Masked()
		}
		if c.JSON {
			if ws == nil {
				ws = []webhook.Webhook{}
			}
			return printJSON(ws)
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEVENT\tTARGET URL\tINTEGRATION\tSTATUS\tORDERED\tSTRIPE SIGNATURE\tLAST TRIGGERED\tLAST STATUS")
		for _, w := range ws {
			last, status := "-", "-"
			if w.LastTriggeredAt != nil {
				last = w.LastTriggeredAt.Format(time.RFC3339)
			}
			if w.LastTriggeredStatus != nil {
				status = *w.LastTriggeredStatus
			} else if w.LastTriggeredError != nil {
				status = *w.LastTriggeredError
			}
			integration, stripeSig, ordered := "-", "-", "-"
			if w.Ordered {
				ordered = "yes"
			}
			if w.IntegrationID != nil {
				integration = *w.IntegrationID
			}
			if w.StripeSignature {
				stripeSig = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", w.ID, w.Event, w.TargetURL, integration, w.Status, ordered, stripeSig, last, status)
		}
		return tw.Flush()
	})
}

type WebhooksEditCmd struct {
	ID        string  `arg:"" help:"Webhook id."`
	Event     *string `name:"event" help:"New event."`
	TargetURL *string `name:"target-url" help:"New target URL."`
	Name      *string `name:"name" help:"New name ('' removes it)."`
	Secret    *string `name:"secret" help:"New secret ('' removes it, 'generate' makes one)."`
	Status    *string `name:"status" enum:"active,disabled" help:"active or disabled."`
	// A pointer: unset keeps the mark (unless the event or URL changes, which clears it).
	StripeSignature *bool `name:"stripe-signature" negatable:"" help:"Mark (--stripe-signature) or unmark (--no-stripe-signature) for Stripe-Signature. Changing --event or --target-url clears the mark unless given again."`
	Ordered         *bool `name:"ordered" negatable:"" help:"Make the webhook ordered (--ordered) or not (--no-ordered, which lets its held deliveries go at once). Deliveries created before --ordered are not ordered."`
	JSON            bool  `name:"json" help:"Print JSON."`
}

func (c *WebhooksEditCmd) Run(ctx context.Context, g *Globals) error {
	generated, err := generateIfAsked(&c.Secret)
	if err != nil {
		return err
	}
	return withStore(ctx, g, func(st webhook.Store) error {
		w, err := st.Edit(ctx, c.ID, webhook.Input{Event: c.Event, TargetURL: c.TargetURL, Name: optional(c.Name),
			Secret: optional(c.Secret), Status: c.Status, StripeSignature: c.StripeSignature, Ordered: c.Ordered})
		if err != nil {
			return err
		}
		shown := w.Masked()
		if generated {
			shown = w
		}
		if c.JSON {
			return printJSON(shown)
		}
		fmt.Printf("updated webhook %s: %s -> %s (%s)\n", w.ID, w.Event, webhook.MaskURL(w.TargetURL), w.Status)
		if generated {
			fmt.Printf("secret (shown once): %s\n", *w.Secret)
		}
		return nil
	})
}

type WebhooksRmCmd struct {
	ID string `arg:"" help:"Webhook id."`
}

func (c *WebhooksRmCmd) Run(ctx context.Context, g *Globals) error {
	return withStore(ctx, g, func(st webhook.Store) error {
		if err := st.Remove(ctx, c.ID); err != nil {
			return err
		}
		fmt.Printf("removed webhook %s\n", c.ID)
		return nil
	})
}

// optional is a flag given or not; a flag given as ” clears the field.
func optional(flag *string) webhook.Nullable {
	if flag == nil {
		return webhook.Nullable{}
	}
	if *flag == "" {
		return webhook.Nullable{Set: true}
	}
	return webhook.Value(*flag)
}

func withStore(ctx context.Context, g *Globals, fn func(webhook.Store) error) error {
	return g.withDB(ctx, func(db *database) error { return fn(webhook.Store{Pool: db.Pool}) })
}

// generateIfAsked replaces a --secret of "generate" with a new whsec_ secret and says
// whether it did, so that the command shows that secret (once).
func generateIfAsked(secret **string) (bool, error) {
	if *secret == nil || **secret != "generate" {
		return false, nil
	}
	s, err := webhook.GenerateSecret()
	if err != nil {
		return false, err
	}
	*secret = &s
	return true, nil
}
