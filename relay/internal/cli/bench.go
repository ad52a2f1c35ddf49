package cli

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/relayhq/relay/relay/internal/bench"
)

// BenchCmd measures the relay on this machine (see relay/bench).
type BenchCmd struct {
	Rate         int           `name:"rate" default:"500" help:"(a) events per second."`
	SteadyFor    time.Duration `name:"steady-for" default:"20s" help:"(a) duration; 0 skips (a)."`
	Backlog      int           `name:"backlog" default:"100000" help:"(b) events in the backlog; 0 skips (b)."`
	FanoutEvents int           `name:"fanout-events" default:"10000" help:"(c) events; 0 skips (c)."`
	Webhooks     int           `name:"webhooks" default:"10" help:"(c) webhooks per event."`
	IdleFor      time.Duration `name:"idle-for" default:"30s" help:"(d) idle duration; 0 skips (d)."`
	Quick        bool          `name:"quick" help:"Small sizes: the whole run in well under a minute."`
	Durable      bool          `name:"durable" help:"Keep fsync on in the private PostgreSQL."`
	RelayEnv     []string      `name:"relay-env" help:"Extra NAME=VALUE for the relay process (repeatable)."`
	JSON         bool          `name:"json" help:"Print JSON."`
}

func (c *BenchCmd) Run(ctx context.Context, g *Globals) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	o := bench.Options{
		DatabaseURL: g.DatabaseURL, Durable: c.Durable, RelayBinary: self, RelayEnv: c.RelayEnv,
		Rate: c.Rate, SteadyFor: c.SteadyFor, Backlog: c.Backlog, FanoutEvents: c.FanoutEvents,
		Webhooks: c.Webhooks, IdleFor: c.IdleFor, Progress: os.Stderr,
	}
	if c.Quick {
		o.SteadyFor, o.Backlog, o.FanoutEvents, o.IdleFor = 5*time.Second, 10_000, 2_000, 5*time.Second
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if c.JSON {
		return printJSON(rep)
	}
	rep.Print(os.Stdout)
	return nil
}
