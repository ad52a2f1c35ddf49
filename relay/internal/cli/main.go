// Package cli is the relay's command line (cmd/relay runs it through relay.Main): it
// parses flags and environment variables and wires the parts together; behaviour lives in
// the other packages. See README.md, "Command line".
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/alecthomas/kong"

	"github.com/relayhq/relay/relay/internal/version"
)

// CLI is the whole command line. Every environment variable has a flag twin.
type CLI struct {
	Globals

	Run         RunCmd         `cmd:"" default:"withargs" help:"Run the relay (default)."`
	Migrate     MigrateCmd     `cmd:"" help:"Apply pending database migrations and exit."`
	Emit        EmitCmd        `cmd:"" help:"Emit one event (in its own transaction)."`
	Webhooks    WebhooksCmd    `cmd:"" help:"Manage webhooks."`
	Keys        KeysCmd        `cmd:"" help:"Manage Admin API keys (id:secret, as Ghost's)."`
	Ghost       GhostCmd       `cmd:"" help:"Connect unmodified Ghost sites: their webhooks come to the relay and fan out from it."`
	Events      EventsCmd      `cmd:"" help:"Audit events."`
	Deliveries  DeliveriesCmd  `cmd:"" help:"Audit deliveries."`
	Redeliver   RedeliverCmd   `cmd:"" help:"Deliver again: one delivery, every delivery of an event (--event), or a webhook's failed ones (--webhook --since)."`
	Replay      ReplayCmd      `cmd:"" help:"Replay the kept log to a webhook: deliveries for the events of a window it matches, those from before it existed included."`
	Replays     ReplaysCmd     `cmd:"" help:"List, follow or cancel replays."`
	Bench       BenchCmd       `cmd:"" help:"Measure throughput, latency, CPU and memory on this machine."`
	Status      StatusCmd      `cmd:"" help:"Show the outbox backlog and, per webhook, pending and failed deliveries and the last error."`
	Receive     ReceiveCmd     `cmd:"" help:"Run a sample webhook receiver that verifies signatures and logs deliveries."`
	Healthcheck HealthcheckCmd `cmd:"" help:"Exit 0 if the relay at RELAY_ADDR is ready (/readyz 200), else 1."`
	Version     VersionCmd     `cmd:"" help:"Print the version."`
}

// Main runs the command line with args (without the program name) and returns the
// process's exit status: 0 on success, 2 for a command line kong refuses, otherwise 1
// (or a command's own status) after one line on stderr.
func Main(args []string) int {
	var cli CLI
	parser, err := newParser(&cli, kong.UsageOnError(), kong.ConfigureHelp(kong.HelpOptions{Compact: true}))
	if err != nil {
		return fail(err)
	}
	kctx, err := parser.Parse(args)
	if err != nil {
		// A setting's value that does not parse is a configuration error like an
		// out-of-range one: exit 1 and the one line naming the variable, without kong's
		// "--flag: ... (from envar ...)" around it.
		if bad := settingFailure(err); bad != nil {
			return fail(bad)
		}
		fmt.Fprintf(os.Stderr, "relay: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	kctx.BindTo(ctx, (*context.Context)(nil))
	if err := kctx.Run(&cli.Globals); err != nil {
		return fail(err)
	}
	return 0
}

// newParser is the command line's parser: the one Main runs, and the one tests parse
// with (plus their own options).
func newParser(cli *CLI, options ...kong.Option) (*kong.Kong, error) {
	return kong.New(cli, append(append([]kong.Option{
		kong.Name("relay"),
		kong.Description("Delivers a CMS's outbox events as signed webhooks, exactly once per webhook."),
		defaultVars(),
	}, settingMappers()...), options...)...)
}

// fail prints one line and returns the exit status, as every subcommand promises.
func fail(err error) int {
	var exit exitError
	code := 1
	if errors.As(err, &exit) {
		code = exit.code
	}
	fmt.Fprintf(os.Stderr, "relay: %v\n", err)
	return code
}

type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// VersionCmd prints the version.
type VersionCmd struct{}

func (VersionCmd) Run() error {
	fmt.Println("relay", version.Version)
	return nil
}
