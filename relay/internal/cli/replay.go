package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/relayhq/relay/relay/internal/audit"
	"github.com/relayhq/relay/relay/internal/store"
)

// ReplayCmd starts a replay and follows it to its end. The running relays do the work
// (any of them, in batches that yield to live deliveries); this command only watches,
// so stopping it (Ctrl-C) stops the watching, not the replay.
type ReplayCmd struct {
	Webhook         string `name:"webhook" required:"" help:"The webhook to replay to."`
	Since           string `name:"since" required:"" help:"Events created since (RFC 3339, a date, or 24h, 7d)."`
	Until           string `name:"until" help:"Events created before this (default: now; what comes later is delivered live)."`
	Event           string `name:"event" help:"Only events this pattern matches (a name, post.*), besides the webhook's own pattern."`
	StripeSignature bool   `name:"stripe-signature" help:"Sign replayed Stripe events with Stripe-Signature (to a webhook marked --stripe-signature). Off: they go unsigned, as a redelivery; Ghost does not deduplicate payment events."`
	Detach          bool   `name:"detach" help:"Start it and return; follow it with relay replays show ID."`
	JSON            bool   `name:"json" help:"Print the replay as JSON (at the end, or at once with --detach)."`
}

func (c *ReplayCmd) Run(ctx context.Context, g *Globals) error {
	now := time.Now()
	req := store.ReplayRequest{WebhookID: c.Webhook, EventPattern: c.Event, StripeSignature: c.StripeSignature, RequestedBy: "cli"}
	var err error
	if req.Since, err = audit.ParseTime(c.Since, now); err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	if c.Until != "" {
		if req.Until, err = audit.ParseTime(c.Until, now); err != nil {
			return fmt.Errorf("--until: %w", err)
		}
	}
	return g.withDB(ctx, func(db *database) error {
		r, err := store.CreateReplay(ctx, db.Pool, req)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("no webhook %s", c.Webhook)
		case errors.Is(err, store.ErrWebhookInactive):
			return fmt.Errorf("webhook %s is disabled; enable it first (relay webhooks edit %s --status active)", c.Webhook, c.Webhook)
		case err != nil:
			return err
		}
		if !c.JSON {
			fmt.Fprintf(os.Stderr, "replay %d: events of %s since %s until %s; the running relays deliver it (Ctrl-C stops watching, not the replay)\n",
				r.ID, r.WebhookID, r.Since.UTC().Format(time.RFC3339), r.Until.UTC().Format(time.RFC3339))
		}
		if c.Detach {
			if c.JSON {
				return printJSON(r)
			}
			fmt.Printf("replay %d started; follow it with: relay replays show %d\n", r.ID, r.ID)
			return nil
		}
		return follow(ctx, db, r.ID, c.JSON)
	})
}

// follow polls a replay until it has finished and its deliveries are no longer
// pending, drawing a progress bar on a terminal (a line every few seconds elsewhere),
// then prints the summary.
func follow(ctx context.Context, db *database, id int64, asJSON bool) error {
	tty := term.IsTerminal(int(os.Stderr.Fd()))
	every := time.Second
	if tty {
		every = 200 * time.Millisecond
	}
	var last time.Time
	var window int64 = -1
	progressAt, scanned, warned := time.Now(), int64(-1), false
	for {
		r, err := store.GetReplay(ctx, db.Pool, id)
		if err != nil {
			return err
		}
		if r.Scanned != scanned || r.UpdatedAt.After(progressAt) {
			progressAt, scanned = time.Now(), r.Scanned
		} else if !warned && time.Since(progressAt) > 30*time.Second && r.Pending == 0 {
			// Nothing pending and nothing moving: no relay is working through it.
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			fmt.Fprintf(os.Stderr, "replay %d has not moved for 30 s with nothing pending: is a relay running (relay run) on this database?\n", id)
			warned = true
		}
		if window < 0 && r.Status == "running" {
			if window, err = store.ReplayWindow(ctx, db.Pool, r); err != nil {
				return err
			}
		}
		if r.Status != "running" {
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			if asJSON {
				return printJSON(r)
			}
			printReplaySummary(os.Stdout, r)
			return nil
		}
		if tty {
			fmt.Fprint(os.Stderr, "\r"+progressLine(r, window, 30))
		} else if time.Since(last) >= 10*time.Second {
			fmt.Fprintln(os.Stderr, progressLine(r, window, 0))
			last = time.Now()
		}
		select {
		case <-ctx.Done():
			if tty {
				fmt.Fprintln(os.Stderr)
			}
			fmt.Fprintf(os.Stderr, "stopped watching; replay %d goes on (relay replays show %d, relay replays cancel %d)\n", id, id, id)
			return nil
		case <-time.After(every):
		}
	}
}

// progressLine is "[#####.....]  42% 4200 of 10000 events · 4100 created · …" for a
// window of window events; width 0 leaves out the bar.
func progressLine(r store.Replay, window int64, width int) string {
	var b strings.Builder
	frac := 0.0
	if window > 0 {
		frac = min(float64(r.Scanned)/float64(window), 1)
	}
	if width > 0 {
		done := int(frac * float64(width))
		b.WriteString("[" + strings.Repeat("#", done) + strings.Repeat(".", width-done) + "] ")
	}
	fmt.Fprintf(&b, "%3.0f%% %d of %d events · %d created · %d already there · %d pending   ",
		frac*100, r.Scanned, window, r.Created, r.Existing, r.Pending)
	return b.String()
}

func printReplaySummary(w io.Writer, r store.Replay) {
	fmt.Fprintf(w, "replay %d %s", r.ID, r.Status)
	if r.Reason != nil {
		fmt.Fprintf(w, " (%s)", *r.Reason)
	}
	fmt.Fprintf(w, ": %d events in the window; %d deliveries created, %d already delivered or pending, %d skipped (not matched)",
		r.Scanned, r.Created, r.Existing, r.Skipped)
	if r.Pending > 0 {
		fmt.Fprintf(w, "; %d still pending", r.Pending)
	}
	fmt.Fprintln(w)
}

// ReplaysCmd lists, follows and cancels replays.
type ReplaysCmd struct {
	List   ReplaysListCmd   `cmd:"" default:"withargs" help:"List replays, newest first."`
	Show   ReplaysShowCmd   `cmd:"" help:"Follow a replay to its end (or show it, if it has finished)."`
	Cancel ReplaysCancelCmd `cmd:"" help:"Stop a running replay; the deliveries it created stay."`
}

type ReplaysListCmd struct {
	Webhook string `name:"webhook" help:"Only this webhook's replays."`
	Limit   int    `name:"limit" default:"50" help:"At most this many."`
	JSON    bool   `name:"json" help:"Print JSON."`
}

func (c *ReplaysListCmd) Run(ctx context.Context, g *Globals) error {
	if c.Limit < 1 {
		return errors.New("--limit must be at least 1")
	}
	return g.withDB(ctx, func(db *database) error {
		rs, err := store.ListReplays(ctx, db.Pool, store.ReplayFilter{WebhookID: c.Webhook, Limit: c.Limit})
		if err != nil {
			return err
		}
		if c.JSON {
			if rs == nil {
				rs = []store.Replay{}
			}
			return printJSON(rs)
		}
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tWEBHOOK\tSTATUS\tSINCE\tUNTIL\tEVENTS\tCREATED\tEXISTING\tSKIPPED\tPENDING\tBY")
		for _, r := range rs {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", r.ID, r.WebhookID, r.Status,
				r.Since.UTC().Format(time.RFC3339), r.Until.UTC().Format(time.RFC3339),
				r.Scanned, r.Created, r.Existing, r.Skipped, r.Pending, r.RequestedBy)
		}
		return tw.Flush()
	})
}

type ReplaysShowCmd struct {
	ID   int64 `arg:"" help:"Replay id."`
	JSON bool  `name:"json" help:"Print JSON."`
}

func (c *ReplaysShowCmd) Run(ctx context.Context, g *Globals) error {
	return g.withDB(ctx, func(db *database) error {
		if _, err := store.GetReplay(ctx, db.Pool, c.ID); errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("no replay %d", c.ID)
		} else if err != nil {
			return err
		}
		return follow(ctx, db, c.ID, c.JSON)
	})
}

type ReplaysCancelCmd struct {
	ID int64 `arg:"" help:"Replay id."`
}

func (c *ReplaysCancelCmd) Run(ctx context.Context, g *Globals) error {
	return g.withDB(ctx, func(db *database) error {
		r, err := store.CancelReplay(ctx, db.Pool, c.ID, "cancelled by the operator (relay replays cancel)")
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("no replay %d", c.ID)
		case errors.Is(err, store.ErrReplayFinished):
			return fmt.Errorf("replay %d has already finished", c.ID)
		case err != nil:
			return err
		}
		printReplaySummary(os.Stdout, r)
		return nil
	})
}
