package signing_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/relayhq/relay/relay/signing"
)

// A receiver verifies a delivery with the webhook's secret before acting on it: the
// Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature), or
// Ghost's X-Ghost-Signature for code written for Ghost. Use the body exactly as
// received, before any JSON decoding.
func ExampleVerifyStandard() {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	receiver := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		err = signing.VerifyStandard(secret, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"),
			r.Header.Get("webhook-signature"), body, 5*time.Minute, time.Now())
		if err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// webhook-id is the same on every retry: deduplicate on it before acting.
		fmt.Println("verified delivery", r.Header.Get("webhook-id"))
		w.WriteHeader(http.StatusNoContent)
	})

	// What the relay sends (here made by hand for the example).
	body := []byte(`{"post":{"current":{"id":"1"},"previous":{}}}`)
	now := time.Now()
	sig, _ := signing.StandardSignature(secret, "9b2c1f9e-3a4b-4c5d-8e6f-7a8b9c0d1e2f", now, body)
	req := httptest.NewRequest(http.MethodPost, "/hooks", bytes.NewReader(body))
	req.Header.Set("webhook-id", "9b2c1f9e-3a4b-4c5d-8e6f-7a8b9c0d1e2f")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	rec := httptest.NewRecorder()
	receiver.ServeHTTP(rec, req)

	// The same body sent by anyone else is refused.
	forged := httptest.NewRequest(http.MethodPost, "/hooks", bytes.NewReader(body))
	forged.Header = req.Header.Clone()
	forged.Header.Set("webhook-signature", "v1,"+"AAAA")
	rec2 := httptest.NewRecorder()
	receiver.ServeHTTP(rec2, forged)
	fmt.Println(rec.Code, rec2.Code)
	// Output:
	// verified delivery 9b2c1f9e-3a4b-4c5d-8e6f-7a8b9c0d1e2f
	// 204 401
}

// Code written for Ghost checks X-Ghost-Signature: "sha256=<hex HMAC-SHA256(secret,
// body + t)>, t=<milliseconds>".
func ExampleVerifyGhost() {
	const secret = "a-webhook-secret"
	body := []byte(`{"event":"post.published","post":{"current":{"id":"1"},"previous":{}}}`)
	header := signing.GhostSignature(secret, body, time.Now()) // as the relay (or Ghost) sends it

	fmt.Println(signing.VerifyGhost(secret, header, body, 5*time.Minute, time.Now()))
	fmt.Println(signing.VerifyGhost("another-secret", header, body, 5*time.Minute, time.Now()) != nil)
	// Output:
	// <nil>
	// true
}
