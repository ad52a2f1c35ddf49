package signing_test

import (
	"testing"
	"time"

	"github.com/relayhq/relay/relay/signing"
)

// body is a typical Ghost post.published payload (about 1.5 KiB).
var body = []byte(`{"post":{"current":{"id":"6b08fd54119a55c8aacd4c9c","uuid":"2b8a7d0e-5f8e-4d4f-9d7e-2b8a7d0e5f8e","title":"A benchmark post with a realistic title","slug":"a-benchmark-post","html":"<p>` +
	string(make([]byte, 1024)) + `</p>","status":"published","visibility":"public","created_at":"2026-11-27T03:00:00.000Z","updated_at":"2026-11-27T03:00:00.000Z","published_at":"2026-11-27T03:00:00.000Z"},"previous":{"status":"draft"}}}`)

func BenchmarkStandardSignature(b *testing.B) {
	now := time.Now()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := signing.StandardSignature("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "2b8a7d0e-5f8e-4d4f-9d7e-2b8a7d0e5f8e", now, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGhostSignature(b *testing.B) {
	now := time.Now()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		_ = signing.GhostSignature("a ghost secret", body, now)
	}
}

func BenchmarkStripeSignature(b *testing.B) {
	now := time.Now()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		_ = signing.StripeSignature("whsec_test", now, body)
	}
}
