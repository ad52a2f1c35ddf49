package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// HealthcheckCmd asks a running relay whether it is ready: exit 0 when /readyz
// answers 200, 1 otherwise. It is what the container image's HEALTHCHECK runs, since a
// distroless image has no curl or wget.
type HealthcheckCmd struct {
	Addr    string        `name:"addr" env:"RELAY_ADDR" default:"${addr}" help:"The relay's HTTP address; an empty or wildcard host means this machine."`
	Path    string        `name:"path" default:"/readyz" help:"/readyz (ready to deliver) or /healthz (process alive)."`
	Timeout time.Duration `name:"timeout" default:"3s" help:"Give up after this long."`
}

func (c *HealthcheckCmd) Run(ctx context.Context) error {
	u, err := healthURL(c.Addr, c.Path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %d: %s", u, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// healthURL turns a listen address (":8080", "0.0.0.0:8080", "[::]:8080",
// "relay:8080") into a URL to dial: a wildcard listener is reached on loopback.
func healthURL(addr, path string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("RELAY_ADDR (--addr) %q: %w", addr, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}
