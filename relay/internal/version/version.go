// Package version holds the relay's version, set at build time:
//
//	go build -ldflags "-X github.com/relayhq/relay/relay/internal/version.Version=1.2.3" ./cmd/relay
//
// It names the relay in the User-Agent of every delivery, in logs and in metrics.
package version

// Version is "dev" in builds that did not set it.
var Version = "dev"
