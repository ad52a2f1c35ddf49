package pipeline

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestRedirectTargetRefusesWhatWouldLeakOrGoNowhere(t *testing.T) {
	t.Parallel()
	from, _ := url.Parse("https://hooks.example/in?token=abc")
	for _, tc := range []struct {
		code     int
		location string
		want     string // "" follows to wantURL; else part of the error
		wantURL  string
	}{
		{http.StatusPermanentRedirect, "/in/", "", "https://hooks.example/in/"},
		{http.StatusMovedPermanently, "https://other.example/x#frag", "", "https://other.example/x"},
		{http.StatusFound, "http://hooks.example/in", "in the clear", ""},
		{http.StatusTemporaryRedirect, "", "no Location", ""},
		{http.StatusTemporaryRedirect, "ftp://hooks.example/", "not http(s)", ""},
		{http.StatusTemporaryRedirect, "https:///nohost", "no host", ""},
		{http.StatusSeeOther, "/elsewhere", "", ""}, // not followed: Ghost's client turns 303 into a GET
		{http.StatusOK, "/elsewhere", "", ""},
	} {
		resp := &http.Response{StatusCode: tc.code, Header: http.Header{}}
		if tc.location != "" {
			resp.Header.Set("Location", tc.location)
		}
		next, err := redirectTarget(from, resp)
		switch {
		case tc.want != "":
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%d %q: err = %v, want %q", tc.code, tc.location, err, tc.want)
			}
		case err != nil:
			t.Errorf("%d %q: err = %v", tc.code, tc.location, err)
		case tc.wantURL == "" && next != nil:
			t.Errorf("%d %q: followed to %s, want not followed", tc.code, tc.location, next)
		case tc.wantURL != "" && (next == nil || next.String() != tc.wantURL):
			t.Errorf("%d %q: next = %v, want %s", tc.code, tc.location, next, tc.wantURL)
		}
	}
}
