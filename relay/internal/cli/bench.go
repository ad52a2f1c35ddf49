package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/relayhq/relay/relay/internal/bench"
)

// BenchCmd measures the relay on this machine (see relay/internal/bench).
type BenchCmd struct {
	Scenarios []string `name:"scenarios" default:"a,b,c,d,w,e,f,g,h,r" help:"Scenarios to run: a steady rate, b backlog drain, c fan-out, d idle, w writer cost, e backlog sizes, f webhooks per event, g body sizes, h slow receivers, r a replay beside live traffic."`

	Rate         int           `name:"rate" default:"500" help:"(a) events per second."`
	SteadyFor    time.Duration `name:"steady-for" default:"20s" help:"(a) duration; 0 skips (a)."`
	Backlog      int           `name:"backlog" default:"100000" help:"(b) events in the backlog; 0 skips (b)."`
	FanoutEvents int           `name:"fanout-events" default:"10000" help:"(c) events; 0 skips (c)."`
	Webhooks     int           `name:"webhooks" default:"10" help:"(c) webhooks per event."`
	IdleFor      time.Duration `name:"idle-for" default:"30s" help:"(d) idle duration; 0 skips (d)."`

	WriterFor     time.Duration `name:"writer-for" default:"2s" help:"(w) length of each plain and each emitting run; 0 skips (w)."`
	WriterRounds  int           `name:"writer-rounds" default:"5" help:"(w) plain/emitting pairs per variant and client count (the report takes medians)."`
	WriterClients []int         `name:"writer-clients" default:"1,8" help:"(w) client connections."`
	WriterRows    int           `name:"writer-rows" default:"10000" help:"(w) rows in the CMS's posts table (each transaction updates a random one)."`

	BacklogSizes []int `name:"backlog-sizes" default:"10000,100000,1000000" help:"(e) backlog sizes drained to one webhook; 0 skips (e)."`

	Widths      []int `name:"widths" default:"1,10,100,1000" help:"(f) webhooks per event; 0 skips (f)."`
	WidthEvents int   `name:"width-events" default:"1000" help:"(f) events at each width."`

	BodySizes  []string `name:"body-sizes" default:"200B,8KiB,64KiB,1MiB" help:"(g) body sizes (B, KiB, MiB); 0 skips (g)."`
	BodyEvents int      `name:"body-events" default:"1000" help:"(g) events at each size, at most --body-budget of bodies."`
	BodyBudget string   `name:"body-budget" default:"256MiB" help:"(g) bytes of bodies at most per size."`

	ReceiverDelays []time.Duration `name:"receiver-delays" default:"5ms,50ms" help:"(h) time the receiver takes per request; 0 skips (h)."`
	ReceiverEvents int             `name:"receiver-events" default:"2000" help:"(h) events at each receiver latency."`

	ReplayEvents int `name:"replay-events" default:"1000000" help:"(r) kept events replayed to a new webhook while another gets (a)'s rate for --steady-for, before and during the replay; 0 skips (r)."`

	DrainTimeout time.Duration `name:"drain-timeout" default:"30m" help:"Longest wait for one drain; one that runs out is reported as failed and the run goes on."`

	Quick bool `name:"quick" help:"Small sizes: the whole run in about two minutes."`
	Fast  bool `name:"fast" help:"Private PostgreSQL with fsync, synchronous_commit and full_page_writes off (default: on, as in production). No effect with --database-url: its server's settings are reported."`
	// Durable was the opt-in to fsync before it became the default.
	Durable  bool     `name:"durable" hidden:"" help:"No-op: the private PostgreSQL is durable unless --fast."`
	RelayEnv []string `name:"relay-env" help:"Extra NAME=VALUE for the relay process (repeatable)."`
	JSON     bool     `name:"json" help:"Print JSON (progress goes to stderr either way)."`
}

func (c *BenchCmd) Run(ctx context.Context, g *Globals) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	if c.Fast && c.Durable {
		return errors.New("bench: --fast and --durable contradict each other")
	}
	o := bench.DefaultOptions()
	o.DatabaseURL, o.Fast, o.RelayBinary, o.RelayEnv, o.PGBinDir, o.Progress = g.DatabaseURL, c.Fast, self, c.RelayEnv, g.PGBinDir, os.Stderr
	for _, s := range c.Scenarios {
		if s = strings.TrimSpace(s); s != "" {
			o.Scenarios = append(o.Scenarios, s)
		}
	}
	o.Rate, o.SteadyFor, o.Backlog, o.FanoutEvents, o.Webhooks, o.IdleFor = c.Rate, c.SteadyFor, c.Backlog, c.FanoutEvents, c.Webhooks, c.IdleFor
	o.WriterFor, o.WriterRounds, o.WriterClients, o.WriterRows = c.WriterFor, c.WriterRounds, positive(c.WriterClients), c.WriterRows
	o.BacklogSizes, o.Widths, o.WidthEvents = positive(c.BacklogSizes), positive(c.Widths), c.WidthEvents
	o.BodySizes = nil
	for _, s := range c.BodySizes {
		if strings.TrimSpace(s) == "0" {
			continue
		}
		n, err := bench.ParseByteSize(s)
		if err != nil {
			return fmt.Errorf("--body-sizes: %w", err)
		}
		o.BodySizes = append(o.BodySizes, n)
	}
	o.BodyEvents = c.BodyEvents
	if o.BodyBudget, err = bench.ParseByteSize(c.BodyBudget); err != nil {
		return fmt.Errorf("--body-budget: %w", err)
	}
	o.ReceiverDelays = nil
	for _, d := range c.ReceiverDelays {
		if d > 0 {
			o.ReceiverDelays = append(o.ReceiverDelays, d)
		}
	}
	o.ReceiverEvents, o.ReplayEvents, o.DrainTimeout = c.ReceiverEvents, c.ReplayEvents, c.DrainTimeout
	if c.Quick {
		o.Quick()
	}
	rep, err := bench.Run(ctx, o)
	if rep != nil && (err == nil || len(rep.Scenarios) > 0 || rep.Writer != nil) {
		// What was measured is printed even when the run stops early.
		if c.JSON {
			if perr := printJSON(rep); perr != nil && err == nil {
				err = perr
			}
		} else {
			rep.Print(os.Stdout)
		}
	}
	if err != nil {
		return err
	}
	if failed := rep.Failed(); len(failed) > 0 {
		return fmt.Errorf("bench: %d scenario(s) failed their checks: %s", len(failed), strings.Join(failed, "; "))
	}
	return nil
}

// positive drops zeros (and negatives), so that a list flag of 0 skips its scenario.
func positive(xs []int) []int {
	var out []int
	for _, x := range xs {
		if x > 0 {
			out = append(out, x)
		}
	}
	return out
}
