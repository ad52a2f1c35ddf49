package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/relayhq/relay/relay/internal/apikey"
)

const (
	fuzzKid         = "0123456789abcdef01234567"
	fuzzIntegration = "fedcba9876543210fedcba98"
)

var fuzzSecret = []byte("fuzzing-secret-32-bytes-long!!!!")

func fuzzLookup(_ context.Context, kid string) (apikey.Active, error) {
	if kid != fuzzKid {
		return apikey.Active{}, apikey.ErrUnknownKey
	}
	return apikey.Active{Secret: fuzzSecret, IntegrationID: fuzzIntegration}, nil
}

func fuzzSign(header, claims string) string {
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, fuzzSecret)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

// FuzzVerifyToken: never panics; every refusal is one of Ghost's token errors (400 or
// 401); a token accepted names our key, says HS256, carries the canonical signature of
// its first two parts, and has claims that hold: an audience for the path, an iat at most
// 5 minutes old and at most 5 minutes ahead, no exp or nbf that has passed or not come.
// The fuzzer cannot forge an HMAC, so besides raw tokens (forged) it writes header and
// claims that are then signed with the key: that is how the claim checks get explored.
func FuzzVerifyToken(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	hdr := `{"alg":"HS256","typ":"JWT","kid":"` + fuzzKid + `"}`
	good := `{"iat":1800000000,"exp":1800000300,"aud":"/admin/"}`
	type seed struct {
		header, claims, path string
		forged               bool // header is the whole token, claims unused
	}
	for _, s := range []seed{
		{hdr, good, "/ghost/api/admin/webhooks/", false},
		{hdr, `{"iat":1800000000,"aud":"/v3/admin/"}`, "/ghost/api/v3/admin/webhooks/", false},
		{hdr, `{"iat":1800000000,"aud":"https://example.com/ghost/api/canary/admin/"}`, "/ghost/api/canary/admin/webhooks/", false},
		{hdr, `{"iat":1800000000,"aud":[["x","/admin/"]]}`, "/relay/v1/events", false},
		{`{"alg":"none","kid":"` + fuzzKid + `"}`, good, "/ghost/api/admin/webhooks/", false},
		{hdr, `{"iat":0,"aud":"/admin/"}`, "/ghost/api/admin/webhooks/", false},
		{hdr, `{"iat":1e400,"exp":1e400,"aud":["/admin/"]}`, "/ghost/api/admin/webhooks/", false},
		{hdr, `{"iat":1800000000,"exp":1e400,"aud":"admin"}`, "/ghost/api/admin/webhooks/", false},
		{hdr, `{"iat":1800000000,"nbf":null,"aud":"/admin/"}`, "/ghost/api/admin/webhooks/", false},
		{hdr, `[1]`, "/ghost/api/admin/webhooks/", false},
		{`{"alg":"HS256","KID":"` + fuzzKid + `"}`, good, "/ghost/api/admin/webhooks/", false},
		{`[1]`, good, "/ghost/api/admin/webhooks/", false},
		{"a.b.c", "", "/", true}, {"..", "", "/", true}, {"e30.e30.", "", "/", true}, {strings.Repeat("A", 5000), "", "/", true},
	} {
		f.Add(s.header, s.claims, s.path, s.forged)
	}
	f.Fuzz(func(t *testing.T, header, claimsText, path string, forged bool) {
		token := header
		if !forged {
			token = fuzzSign(header, claimsText)
		}
		who, err := verifyToken(context.Background(), token, path, now, fuzzLookup)
		if err != nil {
			var e *apiError
			if !errors.As(err, &e) {
				t.Fatalf("a bad token gave a non-Ghost error: %v", err)
			}
			if s := e.status(); s != http.StatusBadRequest && s != http.StatusUnauthorized {
				t.Fatalf("refused with status %d: %v", s, e)
			}
			if e.Code == "" || e.Message == "" {
				t.Fatalf("refusal without Ghost's code and message: %+v", e)
			}
			return
		}
		if who.KeyID != fuzzKid || who.IntegrationID != fuzzIntegration {
			t.Fatalf("accepted as %+v", who)
		}
		parts := strings.Split(token, ".")
		mac := hmac.New(sha256.New, fuzzSecret)
		mac.Write([]byte(parts[0] + "." + parts[1]))
		if parts[2] != base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) {
			t.Fatalf("accepted a token without its canonical signature: %q", token)
		}
		var h map[string]any
		if json.Unmarshal([]byte(latin1(nodeBase64(parts[0]))), &h) != nil || h["alg"] != "HS256" {
			t.Fatalf("accepted a header that is not HS256: %q", parts[0])
		}
		var claims map[string]json.RawMessage
		if err := json.Unmarshal(nodeBase64(parts[1]), &claims); err != nil {
			t.Fatalf("accepted claims that are not an object: %v", err)
		}
		nowSec := float64(now.Unix())
		iat, ok := jsonNumber(claims["iat"])
		if !ok || nowSec >= math.Floor(iat+tokenMaxAge) || iat > nowSec+tokenMaxAhead {
			t.Fatalf("accepted iat %s at %v", claims["iat"], nowSec)
		}
		if raw, has := claims["exp"]; has {
			if exp, ok := jsonNumber(raw); !ok || nowSec >= exp {
				t.Fatalf("accepted exp %s", raw)
			}
		}
		if raw, has := claims["nbf"]; has {
			if nbf, ok := jsonNumber(raw); !ok || nbf > nowSec {
				t.Fatalf("accepted nbf %s", raw)
			}
		}
		if !audienceMatches(audienceFor(path).re, claims["aud"]) {
			t.Fatalf("accepted aud %s for %s", claims["aud"], path)
		}
	})
}

// FuzzGhostWebhookBody: never panics; every refusal is a Ghost error of a type Ghost
// raises for bodies, and schema failures carry ajv's details and the property they
// name; a body accepted for add has exactly one webhook object whose event and
// target_url are strings within Ghost's limits, and the fields read from it are those.
func FuzzGhostWebhookBody(f *testing.F) {
	for _, s := range []string{
		`{"webhooks":[{"event":"post.added","target_url":"https://example.com/"}]}`,
		`{"webhooks":[]}`, `{"webhooks":null}`, `{}`, `[]`, `null`, ``, `{"webhooks":[1]}`,
		`{"webhooks":[{"event":1}]}`, `{"webhooks":[{},{}]}`, `{"webhooks":"x"}`, `{"webhooks":{"0":{"a":1}}}`,
		`{"webhooks":[{"event":"post.added","target_url":"https://example.com/","secret":"\u0000"}]}`,
		`{"webhooks":[{"event":"","target_url":""}]}`, `{"webhooks":[{"id":"x","event":"A","name":null}]}`,
		`{"webhooks":[{"event":"post.added","target_url":"not a url","status":7}]}`,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, edit bool) {
		r := httptest.NewRequest(http.MethodPost, "/ghost/api/admin/webhooks/", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/json")
		data, e := readGhostBody(httptest.NewRecorder(), r)
		if e != nil {
			if e.Type != "InternalServerError" || (e.Status != http.StatusBadRequest && e.Status != http.StatusRequestEntityTooLarge) {
				t.Fatalf("body refused as %+v", e)
			}
			return
		}
		const id = "0123456789abcdef01234567"
		if edit {
			e = validateEditBody(id, data)
		} else {
			e = validateAddBody(data)
		}
		if e == nil {
			_, e = webhookFields(data, edit)
		}
		if e != nil {
			switch e.Type {
			case "BadRequestError":
			case "ValidationError":
				if details, ok := e.Details.([]ajvError); ok {
					last := details[0].InstancePath[strings.LastIndex(details[0].InstancePath, "/")+1:]
					if (last != "" && e.Property != last) || (last == "" && e.Property != "webhooks") {
						t.Fatalf("property %q for first error at %q", e.Property, details[0].InstancePath)
					}
				}
			default:
				t.Fatalf("refused as %+v", e)
			}
			return
		}
		list, ok := member(data, "webhooks").([]any)
		if !ok || len(list) != 1 {
			t.Fatalf("accepted webhooks %v", member(data, "webhooks"))
		}
		item, ok := list[0].(map[string]any)
		if !ok {
			t.Fatalf("accepted item %v", list[0])
		}
		in, _ := webhookFields(data, edit)
		if ev, has := item["event"]; has || !edit {
			s, ok := ev.(string)
			if !ok || s == "" || utf8.RuneCountInString(s) > 50 || s != strings.ToLower(s) || in.Event == nil || *in.Event != s {
				t.Fatalf("accepted event %v (read %v)", ev, in.Event)
			}
		}
		if u, has := item["target_url"]; has || !edit {
			s, ok := u.(string)
			if !ok || s == "" || utf8.RuneCountInString(s) > 2000 || !uriReference.MatchString(s) || in.TargetURL == nil || *in.TargetURL != s {
				t.Fatalf("accepted target_url %v", u)
			}
		}
	})
}
