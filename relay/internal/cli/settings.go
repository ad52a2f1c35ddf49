package cli

// How the command line turns text into settings. kong parses every setting into its
// type with the mappers below, so a value that does not parse fails during parsing with
// one line naming the variable and its flag; ranges are checked afterwards, once, by
// pipeline.Config.Validate (and RunCmd.settings for the HTTP server's own limits).
// Defaults come from where the settings are defined, through kong's variables.

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/console"
	"github.com/relayhq/relay/relay/internal/netguard"
	"github.com/relayhq/relay/relay/internal/pipeline"
)

// The defaults of settings that only the command line has: the HTTP server's.
const (
	defaultAddr           = ":8080"
	defaultMaxConnections = 256
	defaultIdleTimeout    = 30 * time.Second
)

// defaultVars are the defaults that settings' `default:"${...}"` tags refer to, so that
// --help shows, and kong applies, the values the code runs with when nothing is set.
func defaultVars() kong.Vars {
	d := pipeline.DefaultConfig()
	return kong.Vars{
		"addr":                defaultAddr,
		"max_connections":     strconv.Itoa(defaultMaxConnections),
		"idle_timeout":        formatDuration(defaultIdleTimeout),
		"console_session_ttl": formatDuration(console.DefaultSessionTTL),
		"http_timeout":        formatDuration(d.HTTPTimeout),
		"retry_schedule":      retrySchedule(d.Retry.Schedule).String(),
		"retention":           formatDuration(d.Retention),
		"event_retention":     formatDuration(d.EventRetention),
		"disable_after":       formatDuration(d.DisableAfter),
		"workers":             strconv.Itoa(d.Workers),
		"webhook_concurrency": strconv.Itoa(d.WebhookConcurrency),
		"poll_interval":       formatDuration(d.PollInterval),
		"replay_rate":         strconv.Itoa(d.ReplayRate),
	}
}

// settingMappers registers a parser for each type a setting can have. Registered by
// type, they apply to every flag of that type, in every command.
func settingMappers() []kong.Option {
	return []kong.Option{
		kong.TypeMapper(reflect.TypeFor[time.Duration](), settingMapper[time.Duration]{parseDuration}),
		kong.TypeMapper(reflect.TypeFor[int](), settingMapper[int]{parseInt}),
		kong.TypeMapper(reflect.TypeFor[retrySchedule](), settingMapper[retrySchedule]{parseRetrySchedule}),
		kong.TypeMapper(reflect.TypeFor[*netguard.Policy](), settingMapper[*netguard.Policy]{netguard.ParseAllowlist}),
		kong.TypeMapper(reflect.TypeFor[zerolog.Level](), settingMapper[zerolog.Level]{parseLevel}),
		kong.TypeMapper(reflect.TypeFor[logFormat](), settingMapper[logFormat]{parseLogFormat}),
	}
}

// A settingError is a setting's value refused, with the setting's names: "RELAY_X
// (--x): why". Main prints it alone, without kong's own decoration.
type settingError struct {
	setting string
	err     error
}

func (e *settingError) Error() string { return e.setting + ": " + e.err.Error() }
func (e *settingError) Unwrap() error { return e.err }

// settingName is how errors name a setting: its variable and flag, or the flag alone.
func settingName(env, flag string) string {
	if env == "" {
		return "--" + flag
	}
	return fmt.Sprintf("%s (--%s)", env, flag)
}

// settingMapper parses one type of setting with parse.
type settingMapper[T any] struct {
	parse func(string) (T, error)
}

func (m settingMapper[T]) Decode(ctx *kong.DecodeContext, target reflect.Value) error {
	token, err := ctx.Scan.PopValue("value")
	if err != nil {
		return err
	}
	text := fmt.Sprint(token.Value)
	v, err := m.parse(text)
	if err != nil {
		env := ""
		if len(ctx.Value.Tag.Envs) > 0 {
			env = ctx.Value.Tag.Envs[0]
		}
		return &settingError{setting: settingName(env, ctx.Value.Name), err: err}
	}
	target.Set(reflect.ValueOf(v))
	return nil
}

// check reports whether text parses, for settingFailure.
func (m settingMapper[T]) check(text string) error {
	_, err := m.parse(text)
	return err
}

// settingFailure returns the setting whose value kong could not parse, when that is
// what a parse error err is. From a flag, err wraps the settingError. From an
// environment variable, kong keeps only the text ("--x: ... (from envar X=...)"), so
// the variable named there is parsed again to recover it.
func settingFailure(err error) *settingError {
	var bad *settingError
	if errors.As(err, &bad) {
		return bad
	}
	var perr *kong.ParseError
	if !errors.As(err, &perr) || perr.Context == nil {
		return nil
	}
	for _, f := range perr.Context.Flags() {
		m, ok := f.Mapper.(interface{ check(string) error })
		if !ok {
			continue
		}
		for _, env := range f.Envs {
			text, set := os.LookupEnv(env)
			if !set || !strings.Contains(err.Error(), fmt.Sprintf("(from envar %s=", env)) {
				continue
			}
			if err := m.check(text); err != nil {
				return &settingError{setting: settingName(env, f.Name), err: err}
			}
		}
	}
	return nil
}

// PlaceHolder shows a setting's default in --help quoted, as kong shows a string's:
// --retry-schedule="5s,5m,30m,2h,5h,10h,10h", --allowed-targets="".
func (settingMapper[T]) PlaceHolder(f *kong.Flag) string {
	if f.HasDefault {
		return strconv.Quote(f.Default)
	}
	return strings.ToUpper(f.Name)
}

func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (examples: 10s, 1m30s, 720h)", s)
	}
	return d, nil
}

func parseInt(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("invalid number %q", s)
	}
	return n, nil
}

// formatDuration writes a duration the way the README and --help do: 720h, 5m, 1m30s
// (time.Duration.String would say 720h0m0s), and 0 for the settings where zero means
// "keep" or "never" (it would say 0s).
func formatDuration(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// retrySchedule is RELAY_RETRY_SCHEDULE: the waits between attempts.
type retrySchedule []time.Duration

func parseRetrySchedule(s string) (retrySchedule, error) {
	return pipeline.ParseRetrySchedule(s)
}

// String is the schedule in the syntax it is parsed from ("none" when empty).
func (r retrySchedule) String() string {
	if len(r) == 0 {
		return "none"
	}
	parts := make([]string, len(r))
	for i, d := range r {
		parts[i] = formatDuration(d)
	}
	return strings.Join(parts, ",")
}

func parseLevel(s string) (zerolog.Level, error) {
	level, err := zerolog.ParseLevel(strings.ToLower(s))
	if err != nil || s == "" {
		return zerolog.NoLevel, fmt.Errorf("invalid level %q (trace, debug, info, warn, error)", s)
	}
	return level, nil
}

// logFormat is RELAY_LOG_FORMAT: "json", "console", or "" for console on a terminal
// and JSON otherwise.
type logFormat string

func parseLogFormat(s string) (logFormat, error) {
	switch f := logFormat(strings.ToLower(s)); f {
	case "", "json", "console":
		return f, nil
	}
	return "", fmt.Errorf("invalid format %q (json or console)", s)
}

// settingText is a setting's value as the "relay started" line shows it: in the
// syntax it is written in.
func settingText(v any) string {
	if d, ok := v.(time.Duration); ok {
		return formatDuration(d)
	}
	return fmt.Sprint(v)
}

// configError names the variable behind an error of pipeline.Config.Validate: RunCmd's
// fields carry the names of the Config fields they fill.
func configError(err error) error {
	var bad *pipeline.ConfigError
	if !errors.As(err, &bad) {
		return err
	}
	return &settingError{setting: runSettingName(bad.Field), err: errors.New(bad.Reason)}
}

// runSettingName names the variable and flag of RunCmd's field called field.
func runSettingName(field string) string {
	f, ok := reflect.TypeFor[RunCmd]().FieldByName(field)
	if !ok {
		return field
	}
	return settingName(f.Tag.Get("env"), f.Tag.Get("name"))
}
