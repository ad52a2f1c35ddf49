package webhook

import (
	"net/url"
	"strings"
)

// masked stands for a hidden value, as url.URL.Redacted writes it.
const masked = "xxxxx"

// secretParamWords mark a query parameter whose value is likely a credential. A name
// matches when it contains one of them, case-insensitively: hiding an innocent value
// costs a listing a detail, showing a token costs the token.
var secretParamWords = []string{
	"token", "key", "secret", "sig", "password", "passwd", "pwd", "auth", "code",
	"credential", "session", "jwt", "bearer",
}

// MaskURL returns a target URL fit for a listing: the password of its userinfo (or a
// username alone, which is how many services carry a token), the values of query
// parameters whose names look like credentials, and the fragment are replaced by
// "xxxxx". The rest (scheme, host, port, path, other parameters, their order and
// encoding) is shown as stored, so two webhooks can still be told apart. Every place
// that lists webhooks or deliveries uses it; delivery uses the URL as stored.
func MaskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		// The parse error would quote the URL.
		return "(unparsable URL, not shown)"
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), masked)
		} else {
			u.User = url.User(masked)
		}
	}
	u.RawQuery = maskQuery(u.RawQuery)
	if u.Fragment != "" {
		u.Fragment, u.RawFragment = masked, ""
	}
	return u.String()
}

// maskQuery masks values in the raw query string itself, keeping every other byte.
func maskQuery(raw string) string {
	if raw == "" {
		return ""
	}
	parts := strings.Split(raw, "&")
	for i, part := range parts {
		name, value, ok := strings.Cut(part, "=")
		if !ok || value == "" {
			continue
		}
		decoded, err := url.QueryUnescape(name)
		if err != nil {
			decoded = name
		}
		if looksSecret(decoded) {
			parts[i] = name + "=" + masked
		}
	}
	return strings.Join(parts, "&")
}

func looksSecret(name string) bool {
	name = strings.ToLower(name)
	for _, w := range secretParamWords {
		if strings.Contains(name, w) {
			return true
		}
	}
	return false
}
