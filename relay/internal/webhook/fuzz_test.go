package webhook_test

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/relayhq/relay/relay/internal/invalid"
	"github.com/relayhq/relay/relay/internal/webhook"
)

// FuzzValidateTargetURL: never panics; whatever it accepts is an absolute http(s) URL
// with a host, of at most 2000 characters, that net/url parses back the same way.
func FuzzValidateTargetURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/hook", "http://127.0.0.1:9000/x?y=1#z", "ftp://example.com", "//example.com",
		"https://", "https://user:pass@example.com/", "http://[::1]:80/", "http://[fe80::1%25eth0]/",
		"https://exa mple.com/", "javascript:alert(1)", "http://%41.com/", strings.Repeat("a", 2001),
		"https://example.com/" + strings.Repeat("p", 1990), "HTTP://EXAMPLE.COM", "http://:80/", "\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := webhook.ValidateTargetURL(s)
		if err != nil {
			var ve *invalid.Error
			if !errors.As(err, &ve) || ve.Message == "" {
				t.Fatalf("error is not a ValidationError with a message: %v", err)
			}
			return
		}
		if n := utf8.RuneCountInString(s); n > 2000 {
			t.Fatalf("accepted %d characters", n)
		}
		u, perr := url.Parse(s)
		if perr != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
			t.Fatalf("accepted %q (parse: %v)", s, perr)
		}
	})
}

// FuzzValidateEvent: never panics; what it accepts is lowercase, non-empty, at most 50
// characters (as relay.webhooks.event, varchar(50), counts them).
func FuzzValidateEvent(f *testing.F) {
	for _, s := range []string{"post.added", "post.*", "*", "", "Post.Added", strings.Repeat("x", 51), "stripe.invoice.paid"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if webhook.ValidateEvent(s) == nil && (s == "" || utf8.RuneCountInString(s) > 50 || s != strings.ToLower(s)) {
			t.Fatalf("accepted %q", s)
		}
	})
}
