package server

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/relay/apikey"
	"github.com/relayhq/relay/relay/webhook"
)

const fuzzKid = "0123456789abcdef01234567"

var fuzzSecret = []byte("fuzzing-secret-32-bytes-long!!!!")

func fuzzLookup(_ context.Context, kid string) ([]byte, error) {
	if kid != fuzzKid {
		return nil, apikey.ErrUnknownKey
	}
	return fuzzSecret, nil
}

func fuzzSign(header, claims string) string {
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	mac := hmac.New(sha256.New, fuzzSecret)
	mac.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(mac.Sum(nil))
}

// FuzzVerifyToken: never panics; a token accepted carries our kid, HS256 and a valid
// signature, and only the caller's faults come back as *authError.
func FuzzVerifyToken(f *testing.F) {
	now := time.Unix(1_800_000_000, 0)
	good := `{"iat":1800000000,"exp":1800000300,"aud":"/admin/"}`
	f.Add(fuzzSign(`{"alg":"HS256","typ":"JWT","kid":"`+fuzzKid+`"}`, good))
	f.Add(fuzzSign(`{"alg":"none","kid":"`+fuzzKid+`"}`, good))
	f.Add(fuzzSign(`{"alg":"HS256","kid":"`+fuzzKid+`"}`, `{"iat":1800000000,"exp":1800009999,"aud":"/admin/"}`))
	f.Add(fuzzSign(`{"alg":"HS256","kid":"`+fuzzKid+`"}`, `{"iat":1e308,"exp":-1e308,"aud":["/admin/"]}`))
	f.Add("a.b.c")
	f.Add("..")
	f.Add(strings.Repeat("A", 5000))
	f.Fuzz(func(t *testing.T, token string) {
		kid, err := verifyToken(context.Background(), token, now, fuzzLookup)
		if err != nil {
			var ae *authError
			if !errors.As(err, &ae) {
				t.Fatalf("a bad token gave a non-auth error: %v", err)
			}
			return
		}
		if kid != fuzzKid {
			t.Fatalf("accepted kid %q", kid)
		}
		parts := strings.Split(token, ".")
		mac := hmac.New(sha256.New, fuzzSecret)
		mac.Write([]byte(parts[0] + "." + parts[1]))
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		if !hmac.Equal(sig, mac.Sum(nil)) {
			t.Fatalf("accepted a token without a valid signature: %q", token)
		}
	})
}

// FuzzReadWebhookBody: never panics; every error is a 400-class body error, a
// validation error, or the size limit.
func FuzzReadWebhookBody(f *testing.F) {
	for _, s := range []string{
		`{"webhooks":[{"event":"post.added","target_url":"https://example.com/"}]}`,
		`{"webhooks":[]}`, `{"webhooks":null}`, `{}`, `[]`, `null`, ``, `{"webhooks":[1]}`,
		`{"webhooks":[{"event":1}]}`, `{"webhooks":[{},{}]}`, `{"webhooks":"x"}`,
		`{"webhooks":[{"event":"post.added","target_url":"https://example.com/","secret":"\u0000"}]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/ghost/api/admin/webhooks/", strings.NewReader(string(body)))
		w := httptest.NewRecorder()
		_, err := readWebhookBody(w, r)
		if err == nil {
			return
		}
		var bad *errBadBody
		var ve *webhook.ValidationError
		var tooBig *http.MaxBytesError
		if !errors.As(err, &bad) && !errors.As(err, &ve) && !errors.As(err, &tooBig) {
			t.Fatalf("unexpected error kind %T: %v", err, err)
		}
	})
}
