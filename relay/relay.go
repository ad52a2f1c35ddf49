// Package relay is the relay: a sidecar that delivers the events a CMS writes into its
// PostgreSQL outbox as signed webhooks, exactly one successful delivery per (event,
// webhook). It is a program, not a library; cmd/relay runs it with Main.
//
// What other programs import:
//
//   - github.com/relayhq/relay/outbox: what a CMS uses to emit events in its own
//     transactions;
//   - github.com/relayhq/relay/relay/signing: how a receiver verifies a delivery;
//   - github.com/relayhq/relay/relay/receiver: a receiver to copy from;
//   - github.com/relayhq/relay/relay/pglocal: the private PostgreSQL the relay and the
//     project's tests start from the local server binaries.
//
// Everything else is internal, laid out as the flow: internal/pipeline (fan-out, claim,
// deliver, record), internal/store (every state change of a delivery or webhook),
// internal/schedule (which claimed delivery may start), internal/server (HTTP),
// internal/cli (the command line). README.md, "Layout", has the whole table.
package relay

import (
	"os"

	"github.com/relayhq/relay/relay/internal/cli"
)

// Main runs the relay's command line with the process's arguments and exits with its
// status.
func Main() {
	os.Exit(cli.Main(os.Args[1:]))
}
