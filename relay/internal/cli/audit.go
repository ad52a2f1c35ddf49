package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/relayhq/relay/relay/internal/audit"
	"github.com/relayhq/relay/relay/internal/store"
)

// EventsCmd reads the event log (and registers event names; README: "Writing events").
type EventsCmd struct {
	List     EventsListCmd     `cmd:"" help:"List events, newest first, with their deliveries by status."`
	Show     EventsShowCmd     `cmd:"" help:"Show one event: its data, deliveries and every attempt."`
	Register EventsRegisterCmd `cmd:"" help:"Register a custom event name, so that relay.emit and webhooks accept it."`
}

type EventsRegisterCmd struct {
	Name string `arg:"" help:"Lowercase dotted name, e.g. order.shipped (at most 50 characters)."`
}

func (c *EventsRegisterCmd) Run(ctx context.Context, g *Globals) error {
	return withAudit(ctx, g, func(st audit.Store) error {
		// The table's CHECK is the rule (lowercase dotted words); its error says so.
		tag, err := st.Pool.Exec(ctx, `INSERT INTO relay.event_types (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, c.Name)
		if err != nil {
			return fmt.Errorf("register event %q: must be lowercase dotted words ([a-z0-9_], at most 50 characters): %w", c.Name, err)
		}
		if tag.RowsAffected() == 0 {
			fmt.Printf("event %s was already known\n", c.Name)
			return nil
		}
		fmt.Printf("registered event %s\n", c.Name)
		return nil
	})
}

// DeliveriesCmd reads deliveries.
type DeliveriesCmd struct {
	List DeliveriesListCmd `cmd:"" help:"List deliveries, newest first."`
	Skip DeliveriesSkipCmd `cmd:"" help:"Pass over a failed delivery, so that the later deliveries of its ordered key go."`
}

// DeliveriesSkipCmd is the other way out of a failed delivery of an ordered key (the
// first is relay redeliver): the key's later deliveries go, without it.
type DeliveriesSkipCmd struct {
	Delivery int64 `arg:"" help:"Id of the failed delivery."`
}

func (c *DeliveriesSkipCmd) Run(ctx context.Context, g *Globals) error {
	return g.withDB(ctx, func(db *database) error {
		released, err := store.Skip(ctx, db.Pool, c.Delivery)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("no delivery %d", c.Delivery)
		case errors.Is(err, store.ErrNotFailed):
			return fmt.Errorf("delivery %d has not failed: %w", c.Delivery, err)
		case err != nil:
			return err
		}
		if released > 0 {
			fmt.Printf("skipped delivery %d; the next delivery of its key is due now\n", c.Delivery)
		} else {
			fmt.Printf("skipped delivery %d\n", c.Delivery)
		}
		return nil
	})
}

// filterFlags are the filters events list and deliveries list share.
type filterFlags struct {
	Event   string `name:"event" help:"Event name, trailing wildcard (post.*) or *."`
	Source  string `name:"source" help:"Events created by: emit, stripe, ghost (any site) or ghost:<site id>."`
	Webhook string `name:"webhook" help:"Webhook id."`
	Status  string `name:"status" enum:",pending,succeeded,failed,cancelled,skipped" default:"" help:"Delivery status: pending, succeeded, failed, cancelled or skipped."`
	Since   string `name:"since" help:"From this time: RFC 3339, a date (2024-05-01), or a duration ago (24h, 7d)."`
	Until   string `name:"until" help:"Before this time (same forms as --since)."`
	Limit   int    `name:"limit" default:"50" help:"At most this many (1-1000)."`
	Cursor  string `name:"cursor" help:"Continue after a previous page (its next cursor)."`
	JSON    bool   `name:"json" help:"Print JSON."`
}

func (f filterFlags) filter() (audit.Filter, error) {
	af := audit.Filter{Event: f.Event, Webhook: f.Webhook, Status: f.Status, Limit: f.Limit, Cursor: f.Cursor, Source: f.Source}
	now := time.Now()
	var err error
	if f.Since != "" {
		if af.Since, err = audit.ParseTime(f.Since, now); err != nil {
			return af, fmt.Errorf("--since: %w", err)
		}
	}
	if f.Until != "" {
		if af.Until, err = audit.ParseTime(f.Until, now); err != nil {
			return af, fmt.Errorf("--until: %w", err)
		}
	}
	return af, nil
}

type EventsListCmd struct {
	filterFlags
}

func (c *EventsListCmd) Run(ctx context.Context, g *Globals) error {
	f, err := c.filter()
	if err != nil {
		return err
	}
	return withAudit(ctx, g, func(st audit.Store) error {
		events, next, err := st.ListEvents(ctx, f)
		if err != nil {
			return err
		}
		if c.JSON {
			if events == nil {
				events = []audit.Event{}
			}
			return printJSON(map[string]any{"events": events, "next_cursor": next})
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEVENT\tSOURCE\tCREATED\tDELIVERIES")
		for _, e := range events {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.ID, e.Event, e.Source, e.CreatedAt.UTC().Format(time.RFC3339), counts(e.DeliveryCounts))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		return moreHint(next)
	})
}

// counts renders {"succeeded":2,"failed":1} in a fixed order.
func counts(m map[string]int) string {
	var parts []string
	for _, s := range store.Statuses {
		if n := m[string(s)]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

func moreHint(next string) error {
	if next != "" {
		_, err := fmt.Fprintf(os.Stderr, "more: --cursor %s\n", next)
		return err
	}
	return nil
}

type EventsShowCmd struct {
	ID   string `arg:"" help:"Event id (the webhook-id receivers saw)."`
	JSON bool   `name:"json" help:"Print JSON."`
}

func (c *EventsShowCmd) Run(ctx context.Context, g *Globals) error {
	return withAudit(ctx, g, func(st audit.Store) error {
		e, err := st.GetEvent(ctx, c.ID)
		if errors.Is(err, audit.ErrNotFound) {
			return fmt.Errorf("no event %s", c.ID)
		}
		if err != nil {
			return err
		}
		if c.JSON {
			return printJSON(e)
		}
		fmt.Printf("event %s  %s  from %s  created %s\n", e.ID, e.Event, e.Source, e.CreatedAt.UTC().Format(time.RFC3339Nano))
		fmt.Printf("data: %s\n", e.Data)
		if len(e.Deliveries) == 0 {
			fmt.Println("no deliveries (no webhook matched when it was emitted)")
		}
		for _, d := range e.Deliveries {
			printDelivery(d)
		}
		return nil
	})
}

func printDelivery(d audit.Delivery) {
	target := "(webhook deleted)"
	if d.TargetURL != nil {
		target = *d.TargetURL
	}
	fmt.Printf("\ndelivery %d  webhook %s  %s\n  status %s after %d attempt(s)", d.ID, d.WebhookID, target, deliveryState(d), d.Attempts)
	if d.NextAttemptAt != nil {
		fmt.Printf(", next attempt %s", d.NextAttemptAt.UTC().Format(time.RFC3339))
	}
	if d.DeliveredAt != nil {
		fmt.Printf(", delivered %s", d.DeliveredAt.UTC().Format(time.RFC3339))
	}
	fmt.Println()
	for _, a := range d.AttemptLog {
		outcome := "no response"
		if a.StatusCode != nil {
			outcome = "HTTP " + strconv.Itoa(*a.StatusCode)
		}
		if a.Error != nil && (a.StatusCode == nil || *a.Error != outcome) {
			outcome += ": " + *a.Error
		}
		fmt.Printf("  #%d  %s  %5dms  %s\n", a.Attempt, a.StartedAt.UTC().Format(time.RFC3339Nano), a.DurationMS, outcome)
	}
}

type DeliveriesListCmd struct {
	filterFlags
	EventID string `name:"event-id" help:"Only the deliveries of this event."`
}

func (c *DeliveriesListCmd) Run(ctx context.Context, g *Globals) error {
	f, err := c.filter()
	if err != nil {
		return err
	}
	f.EventID = c.EventID
	return withAudit(ctx, g, func(st audit.Store) error {
		ds, next, err := st.ListDeliveries(ctx, f)
		if err != nil {
			return err
		}
		if c.JSON {
			if ds == nil {
				ds = []audit.Delivery{}
			}
			return printJSON(map[string]any{"deliveries": ds, "next_cursor": next})
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tEVENT ID\tEVENT\tWEBHOOK\tSTATUS\tATTEMPTS\tLAST\tCREATED")
		for _, d := range ds {
			last := "-"
			switch {
			case d.LastError != nil:
				last = *d.LastError
			case d.LastStatusCode != nil:
				last = strconv.Itoa(*d.LastStatusCode)
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.EventID, d.Event, d.WebhookID, deliveryState(d),
				d.Attempts, clipText(last, 40), d.CreatedAt.UTC().Format(time.RFC3339))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		return moreHint(next)
	})
}

// deliveryState is the status as listings show it: a held delivery says what it waits for.
func deliveryState(d audit.Delivery) string {
	if d.Held && d.OrderingKey != nil {
		return "pending (held: key " + clipText(*d.OrderingKey, 24) + ")"
	}
	return d.Status
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// RedeliverCmd puts deliveries back in the queue, due now.
type RedeliverCmd struct {
	Delivery int64  `arg:"" optional:"" help:"Delivery id to redeliver."`
	Event    string `name:"event" help:"Redeliver every delivery of this event id."`
	Webhook  string `name:"webhook" help:"Redeliver this webhook's failed deliveries (with --since)."`
	Since    string `name:"since" help:"With --webhook: deliveries created since (RFC 3339, a date, or 24h, 7d)."`
	Status   string `name:"status" enum:"failed,cancelled,succeeded,pending,skipped" default:"failed" help:"With --webhook: which deliveries (default failed)."`
	// Ghost does not deduplicate Stripe events: re-sending one it processed would
	// process it twice, so a signed re-send is never the default.
	StripeSignature bool `name:"stripe-signature" help:"Sign redelivered Stripe events with Stripe-Signature again (to webhooks marked --stripe-signature). Off: they go unsigned, and Ghost refuses them."`
	JSON            bool `name:"json" help:"Print JSON."`
}

func (c *RedeliverCmd) Run(ctx context.Context, g *Globals) error {
	sel := store.Selection{DeliveryID: c.Delivery, EventID: c.Event, WebhookID: c.Webhook, Status: c.Status,
		StripeSignature: c.StripeSignature}
	modes := 0
	for _, set := range []bool{c.Delivery != 0, c.Event != "", c.Webhook != ""} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return errors.New("give exactly one of: a delivery id, --event ID, or --webhook ID --since TIME")
	}
	if c.Webhook != "" {
		if c.Since == "" {
			return errors.New("--webhook needs --since (e.g. --since 24h)")
		}
		t, err := audit.ParseTime(c.Since, time.Now())
		if err != nil {
			return fmt.Errorf("--since: %w", err)
		}
		sel.Since = t
	} else if c.Since != "" {
		return errors.New("--since goes with --webhook")
	}
	return g.withDB(ctx, func(db *database) error {
		res, err := store.Redeliver(ctx, db.Pool, sel)
		if err != nil {
			if errors.Is(err, audit.ErrNotFound) {
				if c.Delivery != 0 {
					return fmt.Errorf("no delivery %d", c.Delivery)
				}
				return fmt.Errorf("no event %s", c.Event)
			}
			return err
		}
		if c.JSON {
			return printJSON(res)
		}
		fmt.Printf("redelivered %d deliveries", len(res.Redelivered))
		if len(res.Redelivered) > 0 && len(res.Redelivered) <= 20 {
			fmt.Printf(" (%s)", joinIDs(res.Redelivered))
		}
		fmt.Println()
		if n := len(res.InFlight); n > 0 {
			fmt.Printf("skipped %d with an attempt in flight (%s)\n", n, joinIDs(res.InFlight))
		}
		if n := len(res.WebhookInactive); n > 0 {
			fmt.Printf("skipped %d whose webhook is disabled or deleted (%s)\n", n, joinIDs(res.WebhookInactive))
		}
		return nil
	})
}

func joinIDs(ids []int64) string {
	s := make([]string, 0, min(len(ids), 20))
	for i, id := range ids {
		if i == 20 {
			s = append(s, fmt.Sprintf("and %d more", len(ids)-i))
			break
		}
		s = append(s, strconv.FormatInt(id, 10))
	}
	return strings.Join(s, ", ")
}

func withAudit(ctx context.Context, g *Globals, fn func(audit.Store) error) error {
	return g.withDB(ctx, func(db *database) error { return fn(audit.Store{Pool: db.Pool}) })
}
