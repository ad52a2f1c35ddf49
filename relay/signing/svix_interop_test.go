//go:build svix

// Svix's Go package (github.com/svix/svix-webhooks/go) imports its generated
// API client, which pulls in gopkg.in/validator.v2 and golang.org/x/oauth2;
// go.sum does not list those, so this file only builds with -tags svix once
// they have been added to the module (go mod tidy). The Standard Webhooks
// reference library, which Svix's verifier is a copy of, is exercised
// unconditionally in signing_test.go.

package signing_test

import (
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/relayhq/relay/relay/signing"
)

func TestStandardSignatureVerifiesWithSvix(t *testing.T) {
	secret := randomWhsec(t)
	body := []byte(`{"event":"post.published","post":{"id":"1","title":"héllo"}}`)
	msgID := "msg_2abc"
	ts := time.Now()

	sig, err := signing.StandardSignature(secret, msgID, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := svix.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, prefix := range []string{"webhook", "svix"} {
		if err := wh.Verify(body, standardHeaders(prefix, msgID, ts, sig)); err != nil {
			t.Fatalf("svix rejected our signature with %s-* headers: %v", prefix, err)
		}
	}
	if err := wh.Verify(body, standardHeaders("webhook", "msg_other", ts, sig)); err == nil {
		t.Fatal("svix accepted a signature for a different message id")
	}
}
