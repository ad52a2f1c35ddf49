package signing_test

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stripe/stripe-go/v82/webhook"

	"github.com/relayhq/relay/relay/signing"
)

// stripeEventBody is a minimal event that stripe-go's ConstructEvent can
// unmarshal.
const stripeEventBody = `{"id":"evt_1","object":"event","type":"customer.created","api_version":"2024-06-20","data":{"object":{}}}`

func randomWhsec(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatalf("generating key: %v", err)
	}
	return "whsec_" + base64.StdEncoding.EncodeToString(key)
}

func standardHeaders(prefix, msgID string, ts time.Time, sig string) http.Header {
	h := http.Header{}
	h.Set(prefix+"-id", msgID)
	h.Set(prefix+"-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set(prefix+"-signature", sig)
	return h
}

// The published Standard Webhooks / Svix test vector, so a bug shared by our
// code and the libraries below would still be caught.
func TestStandardSignatureKnownAnswer(t *testing.T) {
	t.Parallel()
	got, err := signing.StandardSignature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
		"msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if err != nil {
		t.Fatal(err)
	}
	const want = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	if got != want {
		t.Fatalf("StandardSignature = %q, want %q", got, want)
	}
}

func TestStandardSignatureVerifiesWithReferenceLibraries(t *testing.T) {
	t.Parallel()
	secret := randomWhsec(t)
	body := []byte(`{"event":"post.published","post":{"id":"1","title":"héllo"}}`)
	msgID := "msg_2abc"
	ts := time.Now()

	sig, err := signing.StandardSignature(secret, msgID, ts, body)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("standard-webhooks", func(t *testing.T) {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, standardHeaders("webhook", msgID, ts, sig)); err != nil {
			t.Fatalf("standardwebhooks rejected our signature: %v", err)
		}
		tampered := append([]byte{}, body...)
		tampered[0] = '['
		if err := wh.Verify(tampered, standardHeaders("webhook", msgID, ts, sig)); err == nil {
			t.Fatal("standardwebhooks accepted a tampered body; the test is not testing anything")
		}
	})

	// Svix interop lives in svix_interop_test.go behind the "svix" build tag
	// (see the note there).
}

func TestStandardSignatureRawSecret(t *testing.T) {
	t.Parallel()
	const secret = "not-a-whsec-secret"
	body := []byte(`{"a":1}`)
	ts := time.Unix(1700000000, 0)

	got, err := signing.StandardSignature(secret, "msg_1", ts, body)
	if err != nil {
		t.Fatal(err)
	}

	// Independent computation: build the signed content in one string.
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%s.%d.%s", "msg_1", ts.Unix(), body)
	want := "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if got != want {
		t.Fatalf("StandardSignature = %q, want %q", got, want)
	}

	// And the reference library agrees when handed the raw key.
	wh, err := standardwebhooks.NewWebhookRaw([]byte(secret))
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.VerifyIgnoringTimestamp(body, standardHeaders("webhook", "msg_1", ts, got)); err != nil {
		t.Fatalf("standardwebhooks (raw key) rejected our signature: %v", err)
	}
}

func TestSecretKey(t *testing.T) {
	t.Parallel()
	key, err := signing.SecretKey("whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef")))
	if err != nil || string(key) != "0123456789abcdef" {
		t.Fatalf("SecretKey(whsec_...) = %q, %v", key, err)
	}
	key, err = signing.SecretKey("plain")
	if err != nil || string(key) != "plain" {
		t.Fatalf("SecretKey(plain) = %q, %v", key, err)
	}

	for _, bad := range []string{"whsec_!!!not base64", "whsec_abc", "whsec_", ""} {
		if _, err := signing.SecretKey(bad); err == nil {
			t.Errorf("SecretKey(%q) succeeded, want error", bad)
		}
		if _, err := signing.StandardSignature(bad, "msg_1", time.Now(), nil); err == nil {
			t.Errorf("StandardSignature with secret %q succeeded, want error", bad)
		}
	}
	if _, err := signing.SecretKey(""); !errors.Is(err, signing.ErrEmptySecret) {
		t.Errorf("SecretKey(\"\") error = %v, want ErrEmptySecret", err)
	}
	if _, err := signing.StandardSignature("secret", "", time.Now(), nil); err == nil {
		t.Error("StandardSignature with empty message id succeeded, want error")
	}
}

func TestGhostSignature(t *testing.T) {
	t.Parallel()
	const secret = "ghost-secret"
	body := []byte(`{"type":"post.published"}`)
	ts := time.UnixMilli(1700000000123)

	got := signing.GhostSignature(secret, body, ts)

	// Fixed vector computed outside Go:
	//   printf '%s' '{"type":"post.published"}1700000000123' | openssl dgst -sha256 -hmac ghost-secret
	const want = "sha256=d78c02cb77e69433afecc7a4e99e1417e4487604a07f2857e78a2232cb4e2b7c, t=1700000000123"
	if got != want {
		t.Fatalf("GhostSignature = %q, want %q", got, want)
	}

	// Independent computation for an arbitrary time.
	now := time.Now()
	mac := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(mac, "%s%d", body, now.UnixNano()/int64(time.Millisecond))
	want2 := fmt.Sprintf("sha256=%x, t=%d", mac.Sum(nil), now.UnixNano()/int64(time.Millisecond))
	if got := signing.GhostSignature(secret, body, now); got != want2 {
		t.Fatalf("GhostSignature = %q, want %q", got, want2)
	}
}

func TestStripeSignatureKnownAnswer(t *testing.T) {
	t.Parallel()
	// printf '%s' '1700000000.{"id":"evt_1"}' | openssl dgst -sha256 -hmac whsec_test_secret
	got := signing.StripeSignature("whsec_test_secret", time.Unix(1700000000, 0), []byte(`{"id":"evt_1"}`))
	const want = "t=1700000000,v1=248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a"
	if got != want {
		t.Fatalf("StripeSignature = %q, want %q", got, want)
	}
}

func TestVerifyStripeAcceptsStripeGoHeader(t *testing.T) {
	t.Parallel()
	secret := randomWhsec(t)
	now := time.Now()
	signed := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{
		Payload:   []byte(stripeEventBody),
		Secret:    secret,
		Timestamp: now,
	})
	if err := signing.VerifyStripe(signed.Header, []byte(stripeEventBody), secret, 5*time.Minute, now); err != nil {
		t.Fatalf("VerifyStripe rejected a stripe-go header %q: %v", signed.Header, err)
	}
}

func TestStripeSignatureAcceptedByStripeGo(t *testing.T) {
	t.Parallel()
	secret := randomWhsec(t)
	header := signing.StripeSignature(secret, time.Now(), []byte(stripeEventBody))
	ev, err := webhook.ConstructEventWithOptions([]byte(stripeEventBody), header, secret,
		webhook.ConstructEventOptions{IgnoreAPIVersionMismatch: true})
	if err != nil {
		t.Fatalf("stripe-go rejected our header %q: %v", header, err)
	}
	if ev.ID != "evt_1" {
		t.Fatalf("event id = %q, want evt_1", ev.ID)
	}
}

func TestVerifyStripe(t *testing.T) {
	t.Parallel()
	const secret = "whsec_stripe_test"
	body := []byte(stripeEventBody)
	now := time.Unix(1_750_000_000, 0)
	tol := 5 * time.Minute
	good := signing.StripeSignature(secret, now, body)
	sigOf := func(h string) string { return h[strings.Index(h, "v1=")+3:] }
	otherSig := sigOf(signing.StripeSignature("whsec_other", now, body))
	ts := strconv.FormatInt(now.Unix(), 10)

	tests := []struct {
		name    string
		header  string
		body    []byte
		secret  string
		now     time.Time
		wantErr error // nil means accept
	}{
		{name: "valid", header: good},
		{name: "valid at edge of past tolerance", header: good, now: now.Add(tol)},
		{name: "valid at edge of future tolerance", header: good, now: now.Add(-tol)},
		{name: "stale", header: good, now: now.Add(tol + time.Second), wantErr: signing.ErrStaleSignature},
		{name: "future", header: good, now: now.Add(-tol - time.Second), wantErr: signing.ErrStaleSignature},
		{name: "tampered body", header: good, body: []byte(strings.Replace(stripeEventBody, "evt_1", "evt_2", 1)), wantErr: signing.ErrBadSignature},
		{name: "wrong secret", header: good, secret: "whsec_wrong", wantErr: signing.ErrBadSignature},
		{name: "tampered timestamp", header: "t=" + strconv.FormatInt(now.Unix()+1, 10) + ",v1=" + sigOf(good), wantErr: signing.ErrBadSignature},
		{name: "stale and forged reports forgery", header: "t=1,v1=" + otherSig, wantErr: signing.ErrBadSignature},
		{name: "multiple v1 one valid", header: "t=" + ts + ",v1=" + otherSig + ",v1=" + sigOf(good)},
		{name: "multiple v1 valid first", header: "t=" + ts + ",v1=" + sigOf(good) + ",v1=" + otherSig},
		{name: "v0 ignored", header: good + ",v0=" + strings.Repeat("0", 64)},
		{name: "unknown scheme ignored", header: "v2=whatever," + good},
		{name: "only v0", header: "t=" + ts + ",v0=" + sigOf(good), wantErr: signing.ErrBadSignature},
		{name: "whitespace tolerated", header: " t = " + ts + " ,\tv1= " + sigOf(good) + " "},
		{name: "uppercase hex accepted", header: "t=" + ts + ",v1=" + strings.ToUpper(sigOf(good))},
		{name: "empty", header: "", wantErr: signing.ErrMissingSignature},
		{name: "blank", header: "  ", wantErr: signing.ErrMissingSignature},
		{name: "garbage", header: "garbage", wantErr: signing.ErrMalformedSignature},
		{name: "no timestamp", header: "v1=" + sigOf(good), wantErr: signing.ErrMalformedSignature},
		{name: "two timestamps", header: "t=" + ts + "," + good, wantErr: signing.ErrMalformedSignature},
		{name: "signed timestamp", header: "t=+" + ts + ",v1=" + sigOf(good), wantErr: signing.ErrMalformedSignature},
		{name: "negative timestamp", header: "t=-" + ts + ",v1=" + sigOf(good), wantErr: signing.ErrMalformedSignature},
		{name: "huge timestamp", header: "t=99999999999999999999,v1=" + sigOf(good), wantErr: signing.ErrMalformedSignature},
		{name: "non hex v1", header: "t=" + ts + ",v1=" + strings.Repeat("z", 64), wantErr: signing.ErrMalformedSignature},
		{name: "short v1", header: "t=" + ts + ",v1=abcd", wantErr: signing.ErrMalformedSignature},
		{name: "trailing comma", header: good + ",", wantErr: signing.ErrMalformedSignature},
		{name: "empty key", header: "=1," + good, wantErr: signing.ErrMalformedSignature},
		{name: "too long", header: good + ",x=" + strings.Repeat("a", signing.MaxStripeHeaderLen), wantErr: signing.ErrMalformedSignature},
		{name: "too many v1", header: "t=" + ts + strings.Repeat(",v1="+otherSig, signing.MaxStripeSignatures) + ",v1=" + sigOf(good), wantErr: signing.ErrMalformedSignature},
		{name: "max v1 allowed", header: "t=" + ts + strings.Repeat(",v1="+otherSig, signing.MaxStripeSignatures-1) + ",v1=" + sigOf(good)},
		{name: "empty secret", header: good, secret: "-", wantErr: signing.ErrEmptySecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, s, n := body, secret, now
			if tt.body != nil {
				b = tt.body
			}
			if tt.secret == "-" {
				s = ""
			} else if tt.secret != "" {
				s = tt.secret
			}
			if !tt.now.IsZero() {
				n = tt.now
			}
			err := signing.VerifyStripe(tt.header, b, s, tol, n)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("VerifyStripe(%q) = %v, want nil", tt.header, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("VerifyStripe(%q) = %v, want errors.Is %v", tt.header, err, tt.wantErr)
			}
		})
	}
}

func TestVerifyStripeDefaultTolerance(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_750_000_000, 0)
	h := signing.StripeSignature("s", now, nil)
	if err := signing.VerifyStripe(h, nil, "s", 0, now.Add(signing.DefaultStripeTolerance)); err != nil {
		t.Fatalf("within default tolerance: %v", err)
	}
	err := signing.VerifyStripe(h, nil, "s", 0, now.Add(signing.DefaultStripeTolerance+time.Second))
	if !errors.Is(err, signing.ErrStaleSignature) {
		t.Fatalf("beyond default tolerance: %v, want ErrStaleSignature", err)
	}
}

func FuzzVerifyStripe(f *testing.F) {
	now := time.Unix(1_750_000_000, 0)
	body := []byte(stripeEventBody)
	good := signing.StripeSignature("whsec_fuzz", now, body)
	f.Add(good, body, "whsec_fuzz")
	f.Add(good+",v0=00", body, "whsec_fuzz")
	f.Add(" t = 1 , v1 = "+strings.Repeat("ab", 32), []byte{}, "s")
	f.Add("t=,v1=", []byte("x"), "s")
	f.Add("t=1=2,v1", []byte(nil), "s")
	f.Add(",,,", []byte("x"), "")
	f.Add("t=9223372036854775807,v1="+strings.Repeat("0", 64), body, "s")
	f.Fuzz(func(t *testing.T, header string, body []byte, secret string) {
		err := signing.VerifyStripe(header, body, secret, 5*time.Minute, now)
		if err == nil {
			// Acceptance must be justified by a real MAC over the body with
			// a timestamp inside the window: recompute it independently.
			ok := false
			for _, part := range strings.Split(header, ",") {
				k, v, _ := strings.Cut(part, "=")
				if strings.Trim(k, " \t") != "t" {
					continue
				}
				tsec, perr := strconv.ParseInt(strings.Trim(v, " \t"), 10, 64)
				if perr != nil {
					t.Fatalf("accepted header with unparsable t: %q", header)
				}
				if d := now.Sub(time.Unix(tsec, 0)); d > 5*time.Minute || d < -5*time.Minute {
					t.Fatalf("accepted header outside tolerance: %q", header)
				}
				mac := hmac.New(sha256.New, []byte(secret))
				fmt.Fprintf(mac, "%d.%s", tsec, body)
				want := hex.EncodeToString(mac.Sum(nil))
				ok = strings.Contains(strings.ToLower(header), want)
			}
			if !ok {
				t.Fatalf("accepted header without a matching MAC: %q", header)
			}
			return
		}
		for _, sentinel := range []error{signing.ErrMissingSignature, signing.ErrMalformedSignature,
			signing.ErrBadSignature, signing.ErrStaleSignature, signing.ErrEmptySecret} {
			if errors.Is(err, sentinel) {
				return
			}
		}
		t.Fatalf("error %v does not wrap any documented sentinel", err)
	})
}
