package cli

import (
	"net/url"
	"regexp"
	"strings"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/internal/webhook"
)

// secretName matches the settings whose values must never reach a log. It is a
// deny-list by name so that a secret added later is masked without anyone
// remembering to: WEBHOOK_SECRET, RELAY_KEY_ENCRYPTION_KEY, any *_TOKEN or *PASSWORD.
var secretName = regexp.MustCompile(`(?i)secret|password|token|(^|[_-])key($|[_-])`)

// startupConfig is the command's configuration as set, for the "relay started" line:
// every flag, keyed by its environment variable (what the README documents), with
// secrets masked. Walking kong's flags rather than listing fields means a new setting
// shows up here by itself.
func startupConfig(kctx *kong.Context) *zerolog.Event {
	d := zerolog.Dict()
	for _, f := range kctx.Flags() {
		if f.Name == "help" || !f.Target.IsValid() {
			continue
		}
		key := "--" + f.Name
		if len(f.Envs) > 0 {
			key = f.Envs[0]
		}
		d.Str(key, maskSetting(key, settingText(f.Target.Interface())))
	}
	return d
}

// maskSetting hides what a log reader must not see: DATABASE_URL keeps everything but
// its password (which server, which database and which user are what one debugs); a
// secret keeps only a hint to tell two apart.
func maskSetting(name, value string) string {
	switch {
	case value == "":
		return ""
	case name == "DATABASE_URL" || name == "--database-url":
		return redactDatabaseURL(value)
	case secretName.MatchString(name):
		return webhook.MaskSecret(value)
	}
	return value
}

// dsnPassword finds password=... in a key=value connection string, quoted or not.
var dsnPassword = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)`)

// redactDatabaseURL masks the password of a PostgreSQL connection string, in URL form
// (user:password@, or ?password=) or key=value form (password=...).
func redactDatabaseURL(s string) string {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		u, err := url.Parse(s)
		if err != nil {
			// The error would echo the string, password included.
			return "(unparsable URL, not shown)"
		}
		if q := u.Query(); q.Has("password") {
			q.Set("password", "xxxxx")
			u.RawQuery = q.Encode()
		}
		return u.Redacted()
	}
	return dsnPassword.ReplaceAllString(s, "${1}xxxxx")
}
