package webhook_test

import (
	"testing"

	"github.com/relayhq/relay/relay/internal/webhook"
)

func TestMaskURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"https://example.com/hooks/ghost", "https://example.com/hooks/ghost"},
		{"https://example.com/h?page=2&event=post", "https://example.com/h?page=2&event=post"},
		{"http://user:hunter2@example.com/h", "http://user:xxxxx@example.com/h"},
		{"http://ghp_TOKENONLY@example.com/h", "http://xxxxx@example.com/h"},
		{"https://example.com/h?token=abc&x=1", "https://example.com/h?token=xxxxx&x=1"},
		{"https://example.com/h?API_KEY=abc&apikey=d&access_token=e&sig=f&signature=g&password=h&auth=i&code=j&client_secret=k",
			"https://example.com/h?API_KEY=xxxxx&apikey=xxxxx&access_token=xxxxx&sig=xxxxx&signature=xxxxx&password=xxxxx&auth=xxxxx&code=xxxxx&client_secret=xxxxx"},
		{"https://example.com/h?x-amz-signature=abc&X-Amz-Credential=def", "https://example.com/h?x-amz-signature=xxxxx&X-Amz-Credential=xxxxx"},
		{"https://example.com/h?tok%65n=abc", "https://example.com/h?tok%65n=xxxxx"}, // the name is judged decoded
		{"https://example.com/h?token", "https://example.com/h?token"},               // no value to hide
		{"https://example.com/h?token=", "https://example.com/h?token="},
		{"https://example.com/h#access_token=abc", "https://example.com/h#xxxxx"},
		{"https://u:p@example.com:8443/h?key=1#frag", "https://u:xxxxx@example.com:8443/h?key=xxxxx#xxxxx"},
		{"::not a url", "(unparsable URL, not shown)"},
	} {
		if got := webhook.MaskURL(tc.in); got != tc.want {
			t.Errorf("MaskURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
