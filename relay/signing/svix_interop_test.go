// Svix's own verifier (github.com/svix/svix-webhooks/go) must accept what the relay
// signs: many receivers use it rather than the Standard Webhooks reference library.
package signing_test

import (
	"testing"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/relayhq/relay/relay/signing"
)

func TestStandardSignatureVerifiesWithSvix(t *testing.T) {
	t.Parallel()
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
