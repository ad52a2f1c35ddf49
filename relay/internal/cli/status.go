package cli

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/relayhq/relay/relay/internal/status"
	"github.com/relayhq/relay/relay/internal/store"
)

// StatusCmd prints what an operator checks first: is the relay keeping up with the
// outbox, and which webhooks are in trouble.
type StatusCmd struct {
	JSON bool `name:"json" help:"Print JSON."`
}

// statusReport is the --json shape.
type statusReport struct {
	status.Summary
	OldestUnreadSeconds float64          `json:"outbox_oldest_unread_seconds"`
	Webhooks            []status.Webhook `json:"webhooks"`
	// Replays are the running ones.
	Replays []store.Replay `json:"replays_running"`
}

func (c *StatusCmd) Run(ctx context.Context, g *Globals) error {
	return g.withDB(ctx, func(db *database) error {
		sum, err := status.ReadSummary(ctx, db.Pool)
		if err != nil {
			return err
		}
		ws, err := status.ReadWebhooks(ctx, db.Pool)
		if err != nil {
			return err
		}
		replays, err := store.ListReplays(ctx, db.Pool, store.ReplayFilter{Status: "running", Limit: 100})
		if err != nil {
			return err
		}
		slices.Reverse(replays) // oldest first
		if c.JSON {
			if ws == nil {
				ws = []status.Webhook{}
			}
			return printJSON(statusReport{Summary: sum, OldestUnreadSeconds: sum.OldestUnread.Seconds(), Webhooks: ws, Replays: replays})
		}
		oldest := ""
		if sum.Backlog > 0 {
			oldest = fmt.Sprintf(" (oldest %s ago)", sum.OldestUnread.Round(time.Millisecond))
		}
		fmt.Printf("outbox backlog: %d unread event(s)%s\n", sum.Backlog, oldest)
		fmt.Printf("deliveries: %d pending, %d failed\n", sum.Pending, sum.Failed)
		for _, r := range replays {
			fmt.Printf("replay %d running for webhook %s: %d events looked at, %d deliveries created, %d pending (relay replays show %d)\n",
				r.ID, r.WebhookID, r.Scanned, r.Created, r.Pending, r.ID)
		}
		fmt.Println()
		tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "WEBHOOK\tEVENT\tTARGET URL\tSTATUS\tPENDING\tFAILED\tHELD\tLAST ATTEMPT\tLAST ERROR")
		for _, w := range ws {
			last, lastErr := "-", "-"
			if w.LastTriggeredAt != nil {
				last = w.LastTriggeredAt.Format(time.RFC3339)
			}
			if w.LastError != nil {
				lastErr = oneLine(*w.LastError, 80)
			}
			st := w.Status
			if w.DisabledReason != nil {
				st += ": " + oneLine(*w.DisabledReason, 60)
			}
			held := "-" // not ordered
			if w.Ordered {
				held = strconv.FormatInt(w.Held, 10)
				if w.BlockedKeys > 0 {
					held += fmt.Sprintf(" (%d key(s) blocked by a failed delivery: redeliver or skip it)", w.BlockedKeys)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", w.ID, w.Event, w.TargetURL, st,
				strconv.FormatInt(w.Pending, 10), strconv.FormatInt(w.Failed, 10), held, last, lastErr)
		}
		return tw.Flush()
	})
}

// oneLine keeps a table row on one line: receivers' error texts can hold newlines
// and tabs, which would break the columns.
func oneLine(s string, limit int) string {
	r := []rune(s)
	out := make([]rune, 0, min(len(r), limit+1))
	for _, c := range r {
		if len(out) == limit {
			return string(out) + "…"
		}
		if c == '\n' || c == '\r' || c == '\t' {
			c = ' '
		}
		out = append(out, c)
	}
	return string(out)
}
