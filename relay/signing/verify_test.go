package signing_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/relayhq/relay/relay/signing"
)

// The published Standard Webhooks test vector verifies, at its own time and not five
// minutes and one second later.
func TestVerifyStandardKnownAnswer(t *testing.T) {
	t.Parallel()
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	body := []byte(`{"test": 2432232314}`)
	at := time.Unix(1614265330, 0)
	sig := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	if err := signing.VerifyStandard(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", sig, body, 0, at); err != nil {
		t.Fatalf("known answer rejected: %v", err)
	}
	err := signing.VerifyStandard(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", sig, body, 0, at.Add(5*time.Minute+time.Second))
	if !errors.Is(err, signing.ErrStaleSignature) {
		t.Fatalf("stale signature: got %v, want ErrStaleSignature", err)
	}
}

// What the reference library signs, we accept; whatever is tampered with, we refuse.
func TestVerifyStandardAcceptsReferenceLibrarySignatures(t *testing.T) {
	t.Parallel()
	secret := randomWhsec(t)
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"post":{"current":{"id":"1"},"previous":{}}}`)
	now := time.Now()
	sig, err := wh.Sign("evt-1", now, body)
	if err != nil {
		t.Fatal(err)
	}
	ts := strconv.FormatInt(now.Unix(), 10)
	if err := signing.VerifyStandard(secret, "evt-1", ts, sig, body, 0, now); err != nil {
		t.Fatalf("reference signature rejected: %v", err)
	}
	// Several signatures during a secret rotation: one valid among them is enough.
	if err := signing.VerifyStandard(secret, "evt-1", ts, "v1,AAAA "+sig+" v2,zzz", body, 0, now); err != nil {
		t.Fatalf("valid signature among others rejected: %v", err)
	}
	for name, tc := range map[string]struct{ id, ts, sig, body, secret string }{
		"body":      {"evt-1", ts, sig, `{"post":{}}`, secret},
		"id":        {"evt-2", ts, sig, string(body), secret},
		"timestamp": {"evt-1", strconv.FormatInt(now.Unix()+1, 10), sig, string(body), secret},
		"secret":    {"evt-1", ts, sig, string(body), randomWhsec(t)},
		"version":   {"evt-1", ts, "v2," + sig[3:], string(body), secret},
	} {
		err := signing.VerifyStandard(tc.secret, tc.id, tc.ts, tc.sig, []byte(tc.body), 0, now)
		if !errors.Is(err, signing.ErrBadSignature) {
			t.Errorf("tampered %s: got %v, want ErrBadSignature", name, err)
		}
	}
	if err := signing.VerifyStandard(secret, "evt-1", ts, "", body, 0, now); !errors.Is(err, signing.ErrMissingSignature) {
		t.Errorf("no signature: got %v, want ErrMissingSignature", err)
	}
}

func TestVerifyGhost(t *testing.T) {
	t.Parallel()
	const secret = "whsec_dGhlIGdob3N0IHNlY3JldA==" // Ghost keys with these bytes as they are
	body := []byte(`{"post":{"current":{"id":"1"}}}`)
	now := time.UnixMilli(1751000000123)
	header := signing.GhostSignature(secret, body, now)
	if err := signing.VerifyGhost(secret, header, body, 0, now.Add(4*time.Minute)); err != nil {
		t.Fatalf("own signature rejected: %v", err)
	}
	if err := signing.VerifyGhost(secret, header, []byte(`{}`), 0, now); !errors.Is(err, signing.ErrBadSignature) {
		t.Errorf("tampered body: got %v, want ErrBadSignature", err)
	}
	if err := signing.VerifyGhost("other", header, body, 0, now); !errors.Is(err, signing.ErrBadSignature) {
		t.Errorf("other secret: got %v, want ErrBadSignature", err)
	}
	// Moving t moves the MAC: a replay cannot be made fresh by editing the header.
	forged := signing.GhostSignature(secret, body, now)[:len("sha256=")+64] + ", t=" + strconv.FormatInt(now.Add(time.Hour).UnixMilli(), 10)
	if err := signing.VerifyGhost(secret, forged, body, 0, now.Add(time.Hour)); !errors.Is(err, signing.ErrBadSignature) {
		t.Errorf("edited timestamp: got %v, want ErrBadSignature", err)
	}
	if err := signing.VerifyGhost(secret, header, body, 0, now.Add(6*time.Minute)); !errors.Is(err, signing.ErrStaleSignature) {
		t.Errorf("old signature: got %v, want ErrStaleSignature", err)
	}
	for _, bad := range []string{"", "sha256=abc", "t=123", "garbage"} {
		if err := signing.VerifyGhost(secret, bad, body, 0, now); err == nil {
			t.Errorf("header %q accepted", bad)
		}
	}
}
