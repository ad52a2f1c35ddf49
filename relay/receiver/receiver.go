// Package receiver is a sample webhook endpoint: it verifies what the relay signs and
// logs each delivery. `relay receive` serves it; the README walkthrough and the
// docker-compose demo point webhooks at it. It is also a compact reference for anyone
// writing a receiver: read the body once, verify it as received, answer 2xx fast,
// deduplicate on webhook-id.
package receiver

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/signing"
)

// MaxBody is the largest body accepted: the relay's event limit (1 MiB) plus room.
const MaxBody = 2 << 20

// logBodyLimit keeps one log line readable; a longer body is cut and says so.
const logBodyLimit = 16 << 10

// seenLimit bounds the memory of webhook-ids seen, which flags redeliveries; past it the
// memory starts over, so a very late duplicate goes unflagged (it is still answered 2xx).
const seenLimit = 100_000

// Handler verifies and logs deliveries. With a Secret, a request must carry a valid
// Standard Webhooks signature (webhook-id, webhook-timestamp, webhook-signature) and a
// valid X-Ghost-Signature, both signed within Tolerance of now; the relay sends both
// whenever the webhook has a secret, so a missing one is as suspect as a wrong one.
// Without a Secret every POST is logged as unverified. It answers 204, 401 for a bad
// signature, 413 for a body over MaxBody and 405 for anything but POST.
type Handler struct {
	Secret    string
	Tolerance time.Duration    // zero: signing.DefaultTolerance (5 minutes)
	Log       zerolog.Logger   // one info line per accepted delivery, a warning per refusal
	Now       func() time.Time // nil: time.Now; tests pin it

	mu   sync.Mutex
	seen map[string]struct{}
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		// The sender gave up mid-body; nobody is left to answer.
		h.Log.Warn().Err(err).Str("remote", r.RemoteAddr).Msg("could not read delivery body")
		return
	}
	id := r.Header.Get("webhook-id")
	if h.Secret != "" {
		if err := h.verify(r.Header, body); err != nil {
			h.Log.Warn().Err(err).Str("id", id).Str("remote", r.RemoteAddr).Msg("delivery refused: bad signature")
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
	}
	ev := h.Log.Info().Str("id", id).Bool("verified", h.Secret != "").Bool("duplicate", h.remember(id)).
		Str("path", r.URL.Path)
	if event := eventName(body); event != "" {
		ev = ev.Str("event", event)
	}
	logged := body
	if len(logged) > logBodyLimit {
		logged = logged[:logBodyLimit]
		ev = ev.Int("body_bytes", len(body)).Bool("body_truncated", true)
	}
	if json.Valid(logged) {
		ev = ev.RawJSON("body", logged)
	} else {
		ev = ev.Bytes("body", logged)
	}
	ev.Msg("delivery received")
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) verify(hd http.Header, body []byte) error {
	now := time.Now
	if h.Now != nil {
		now = h.Now
	}
	t := now()
	if err := signing.VerifyStandard(h.Secret, hd.Get("webhook-id"), hd.Get("webhook-timestamp"),
		hd.Get("webhook-signature"), body, h.Tolerance, t); err != nil {
		return err
	}
	return signing.VerifyGhost(h.Secret, hd.Get("X-Ghost-Signature"), body, h.Tolerance, t)
}

// remember records id and reports whether it was seen before: the relay sends the
// same webhook-id on every retry, so a second 2xx-worthy request with it is the
// duplicate receivers are told to expect after a crash.
func (h *Handler) remember(id string) bool {
	if id == "" {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.seen[id]; ok {
		return true
	}
	if h.seen == nil || len(h.seen) >= seenLimit {
		h.seen = make(map[string]struct{})
	}
	h.seen[id] = struct{}{}
	return false
}

// eventName finds the relay event's name when the body carries it: a Stripe event
// ({"object":"event","type":T}) is relayed as stripe.T. Ghost-shaped bodies do not
// name their event (Ghost tells receivers apart by URL); their top-level key ("post",
// "tag", ...) shows the resource in the logged body.
func eventName(body []byte) string {
	var v struct {
		Object string `json:"object"`
		Type   string `json:"type"`
	}
	if json.Unmarshal(body, &v) != nil || v.Object != "event" || v.Type == "" {
		return ""
	}
	return "stripe." + v.Type
}
