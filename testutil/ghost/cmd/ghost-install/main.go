// Command ghost-install installs the Ghost that the tests run (package testutil/ghost),
// so that CI pays for the first install before `go test` rather than inside one test
// package's timeout. It prints the install directory last.
//
//	go run ./testutil/ghost/cmd/ghost-install [-q]
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/relayhq/relay/testutil/ghost"
)

func main() {
	quiet := flag.Bool("q", false, "do not copy the install log to stderr")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var log io.Writer = os.Stderr
	if *quiet {
		log = nil
	}
	start := time.Now()
	h, err := ghost.Install(ctx, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "ghost-install: Ghost %s ready in %s\n", ghost.Version, time.Since(start).Round(time.Millisecond))
	fmt.Println(h.Dir)
}
