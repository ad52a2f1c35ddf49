package cli

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/console"
	"github.com/relayhq/relay/relay/internal/pipeline"
)

// Unset, every setting of `relay run` is the default the pipeline defines: the
// command line restates none of them.
func TestRunDefaultsAreThePipelines(t *testing.T) {
	cli, err := parseCLI(t, nil, []string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, limits, err := cli.Run.settings()
	if err != nil {
		t.Fatal(err)
	}
	want := pipeline.DefaultConfig()
	if cfg.HTTPTimeout != want.HTTPTimeout || cfg.Retention != want.Retention || cfg.EventRetention != want.EventRetention ||
		cfg.DisableAfter != want.DisableAfter ||
		cfg.Workers != want.Workers || cfg.WebhookConcurrency != want.WebhookConcurrency || cfg.PollInterval != want.PollInterval ||
		!slices.Equal(cfg.Retry.Schedule, want.Retry.Schedule) || cfg.Retry.Jitter != want.Retry.Jitter {
		t.Errorf("relay run with nothing set: %+v, want pipeline.DefaultConfig() %+v", cfg, want)
	}
	if cfg.Targets == nil || cfg.Targets.String() != "" {
		t.Errorf("allowlist %v, want an empty one", cfg.Targets)
	}
	if limits != (serverLimits{maxConns: defaultMaxConnections, idleTimeout: defaultIdleTimeout, consoleSession: console.DefaultSessionTTL}) {
		t.Errorf("server limits %+v", limits)
	}
	if cfg.EventRetention != 0 {
		t.Errorf("event retention %v by default, want 0: events are kept", cfg.EventRetention)
	}
	if cli.Run.Addr != defaultAddr {
		t.Errorf("addr %q", cli.Run.Addr)
	}
	if cli.LogLevel != zerolog.InfoLevel || cli.LogFormat != "" {
		t.Errorf("log level %v, format %q; want info and automatic", cli.LogLevel, cli.LogFormat)
	}
}

// Set, each reaches the pipeline's Config as the type it is, from the variable or
// from its flag.
func TestRunSettingsArriveTyped(t *testing.T) {
	cli, err := parseCLI(t, map[string]string{
		"RELAY_HTTP_TIMEOUT": "1m30s", "RELAY_RETRY_SCHEDULE": "1s, 2m", "RELAY_ALLOWED_TARGETS": "10.0.0.0/8:443,receiver:9000",
		"RELAY_RETENTION": "0", "RELAY_EVENT_RETENTION": "8760h", "RELAY_WORKERS": "3", "RELAY_LOG_LEVEL": "WARN", "RELAY_LOG_FORMAT": "Console",
		"RELAY_CONSOLE_SESSION_TTL": "30m",
	}, []string{"run", "--webhook-concurrency", "2", "--poll-interval=250ms", "--disable-after", "1h", "--idle-timeout=1s"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, limits, err := cli.Run.settings()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPTimeout != 90*time.Second || !slices.Equal(cfg.Retry.Schedule, []time.Duration{time.Second, 2 * time.Minute}) ||
		cfg.Targets.String() != "10.0.0.0/8:443,receiver:9000" || cfg.Retention != 0 || cfg.EventRetention != 8760*time.Hour || cfg.Workers != 3 ||
		cfg.WebhookConcurrency != 2 || cfg.PollInterval != 250*time.Millisecond || cfg.DisableAfter != time.Hour ||
		limits.idleTimeout != time.Second || limits.consoleSession != 30*time.Minute {
		t.Errorf("settings did not arrive: %+v %+v", cfg, limits)
	}
	if cli.LogLevel != zerolog.WarnLevel || cli.LogFormat != "console" {
		t.Errorf("log level %v, format %q", cli.LogLevel, cli.LogFormat)
	}
	// The flag sets it as well, and wins over the variable.
	cli, err = parseCLI(t, map[string]string{"RELAY_EVENT_RETENTION": "8760h"}, []string{"run", "--event-retention=2160h"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _, err := cli.Run.settings(); err != nil || cfg.EventRetention != 2160*time.Hour || cfg.Retention != pipeline.DefaultConfig().Retention {
		t.Errorf("--event-retention=2160h: event retention %v, retention %v (%v)", cfg.EventRetention, cfg.Retention, err)
	}
}

// A value that does not parse fails the parse with the one line Main prints, whether
// it came from the variable or the flag; a value out of range fails the one check,
// pipeline.Config.Validate (or the server's limits), named the same way.
func TestEverySettingErrorNamesItsVariable(t *testing.T) {
	for _, tc := range []struct {
		env, value, want string
	}{
		{"RELAY_HTTP_TIMEOUT", "banana", `RELAY_HTTP_TIMEOUT (--http-timeout): invalid duration "banana" (examples: 10s, 1m30s, 720h)`},
		{"RELAY_WORKERS", "many", `RELAY_WORKERS (--workers): invalid number "many"`},
		{"RELAY_EVENT_RETENTION", "forever", `RELAY_EVENT_RETENTION (--event-retention): invalid duration "forever" (examples: 10s, 1m30s, 720h)`},
		{"RELAY_RETRY_SCHEDULE", "5s,soon", `RELAY_RETRY_SCHEDULE (--retry-schedule): invalid duration "soon"`},
		{"RELAY_RETRY_SCHEDULE", "1000h", `RELAY_RETRY_SCHEDULE (--retry-schedule): invalid duration "1000h": at most 720h`},
		{"RELAY_ALLOWED_TARGETS", "http://x/", `RELAY_ALLOWED_TARGETS (--allowed-targets): netguard: RELAY_ALLOWED_TARGETS entry "http://x/"`},
		{"RELAY_LOG_LEVEL", "loud", `RELAY_LOG_LEVEL (--log-level): invalid level "loud"`},
		{"RELAY_LOG_LEVEL", "", `RELAY_LOG_LEVEL (--log-level): invalid level ""`},
		{"RELAY_LOG_FORMAT", "xml", `RELAY_LOG_FORMAT (--log-format): invalid format "xml" (json or console)`},
		{"RELAY_MAX_CONNECTIONS", "lots", `RELAY_MAX_CONNECTIONS (--max-connections): invalid number "lots"`},
	} {
		_, err := parseCLI(t, map[string]string{tc.env: tc.value}, []string{"run"})
		bad := settingFailure(err)
		if bad == nil || !strings.HasPrefix(bad.Error(), tc.want) || strings.Contains(bad.Error(), "\n") {
			t.Errorf("%s=%q: parse error %v, setting error %v; want one line starting %q", tc.env, tc.value, err, bad, tc.want)
		}
	}
	_, err := parseCLI(t, nil, []string{"run", "--http-timeout=banana"})
	if bad := settingFailure(err); bad == nil || bad.Error() != `RELAY_HTTP_TIMEOUT (--http-timeout): invalid duration "banana" (examples: 10s, 1m30s, 720h)` {
		t.Errorf("--http-timeout=banana: %v", err)
	}
	// Another command is not stopped by a bad value it does not read.
	if _, err := parseCLI(t, map[string]string{"RELAY_HTTP_TIMEOUT": "banana"}, []string{"version"}); err != nil {
		t.Errorf("relay version with a bad RELAY_HTTP_TIMEOUT: %v", err)
	}

	for _, tc := range []struct{ env, value, want string }{
		{"RELAY_HTTP_TIMEOUT", "0s", "RELAY_HTTP_TIMEOUT (--http-timeout): 0s is out of range"},
		{"RELAY_HTTP_TIMEOUT", "11m", "RELAY_HTTP_TIMEOUT (--http-timeout): 11m0s is out of range"},
		{"RELAY_RETENTION", "-1s", "RELAY_RETENTION (--retention): "},
		{"RELAY_EVENT_RETENTION", "-1s", "RELAY_EVENT_RETENTION (--event-retention): -1s is out of range"},
		{"RELAY_DISABLE_AFTER", "-1h", "RELAY_DISABLE_AFTER (--disable-after): "},
		{"RELAY_POLL_INTERVAL", "0", "RELAY_POLL_INTERVAL (--poll-interval): "},
		{"RELAY_WORKERS", "0", "RELAY_WORKERS (--workers): 0 is out of range [1, 10000]"},
		{"RELAY_WEBHOOK_CONCURRENCY", "10001", "RELAY_WEBHOOK_CONCURRENCY (--webhook-concurrency): "},
		{"RELAY_MAX_CONNECTIONS", "0", "RELAY_MAX_CONNECTIONS (--max-connections): "},
		{"RELAY_IDLE_TIMEOUT", "0s", "RELAY_IDLE_TIMEOUT (--idle-timeout): "},
		{"RELAY_CONSOLE_SESSION_TTL", "1m", "RELAY_CONSOLE_SESSION_TTL (--console-session-ttl): 1m is out of range [5m, 168h]"},
		{"RELAY_CONSOLE_SESSION_TTL", "720h", "RELAY_CONSOLE_SESSION_TTL (--console-session-ttl): 720h is out of range"},
	} {
		cli, err := parseCLI(t, map[string]string{tc.env: tc.value}, []string{"run"})
		if err != nil {
			t.Fatalf("%s=%s: %v", tc.env, tc.value, err)
		}
		if _, _, err := cli.Run.settings(); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s=%s: %v, want %q...", tc.env, tc.value, err, tc.want)
		}
	}
}

// Every field pipeline.Config.Validate can refuse that a variable sets has a RunCmd
// field of the same name, so its error names the variable.
func TestConfigErrorsMapToRunFlags(t *testing.T) {
	for _, field := range []string{"HTTPTimeout", "Retention", "EventRetention", "DisableAfter", "PollInterval", "Workers", "WebhookConcurrency"} {
		if got := runSettingName(field); !strings.HasPrefix(got, "RELAY_") || !strings.Contains(got, "(--") {
			t.Errorf("pipeline.Config.%s is reported as %q, want its variable and flag", field, got)
		}
	}
}

func TestDurationsAreWrittenAsTheREADMEWritesThem(t *testing.T) {
	for d, want := range map[time.Duration]string{
		720 * time.Hour: "720h", 5 * time.Minute: "5m", 90 * time.Second: "1m30s", 10 * time.Second: "10s",
		90 * time.Minute: "1h30m", 100 * time.Millisecond: "100ms", 0: "0", time.Hour + time.Second: "1h0m1s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%s) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(want); err != nil || back != d {
			t.Errorf("%q does not parse back to %s", want, d)
		}
	}
	if got := retrySchedule(pipeline.DefaultRetrySchedule()).String(); got != "5s,5m,30m,2h,5h,10h,10h" {
		t.Errorf("default schedule written %q", got)
	}
	if got := (retrySchedule{}).String(); got != "none" {
		t.Errorf("empty schedule written %q", got)
	}
}
