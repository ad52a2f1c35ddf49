package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/relayhq/relay/relay/receiver"
)

// ReceiveCmd serves the sample receiver (package receiver) until interrupted.
type ReceiveCmd struct {
	Addr      string        `name:"addr" env:"RECEIVER_ADDR" default:":9000" help:"Listen address."`
	Secret    string        `name:"secret" env:"RECEIVER_SECRET" default:"" help:"The webhooks' signing secret: verify both signatures, refuse others with 401. Empty: log deliveries unverified."`
	Tolerance time.Duration `name:"tolerance" default:"5m" help:"How old (or early) a signature's timestamp may be."`
}

func (c *ReceiveCmd) Run(ctx context.Context, g *Globals) error {
	log := g.logger(os.Stderr)
	if c.Tolerance <= 0 {
		return fmt.Errorf("--tolerance must be positive, got %s", c.Tolerance)
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("RECEIVER_ADDR (--addr) %s: %w", c.Addr, err)
	}
	mux := http.NewServeMux()
	// For a container healthcheck (`relay healthcheck --addr :9000 --path /healthz`).
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("/", &receiver.Handler{Secret: c.Secret, Tolerance: c.Tolerance, Log: log})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	log.Info().Str("addr", ln.Addr().String()).Bool("verifying", c.Secret != "").Msg("receiver listening")
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("receiver: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("receiver: shutdown: %w", err)
	}
	return nil
}
