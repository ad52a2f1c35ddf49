package server

// The Stripe endpoint (README: "Stripe in front of Ghost"). It sits where Ghost's own endpoint sits, so `stripe
// listen --forward-to http://localhost:8080/members/webhooks/stripe/` and a Stripe
// dashboard endpoint work unchanged. A verified event is stored once per Stripe id and
// emitted as stripe.<type> in the same transaction; the relay then delivers it, re-signed
// with the same secret (deliver.go), to stripe.* webhooks such as a Ghost site.
//
// Status codes follow Ghost's endpoint, because Stripe acts on them: 2xx ends Stripe's
// retries, anything else makes Stripe retry for up to three days. Hence a duplicate is a
// 200, and a database failure is a 500 (Stripe will resend, and the id dedupes it).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/rs/zerolog"

	"github.com/relayhq/relay/relay/signing"
)

const (
	// stripeMaxBody bounds what an unauthenticated caller can make us buffer before
	// the signature is checked. Stripe events are a few KiB (lists inside them are
	// truncated by Stripe), far below this and below relay.max_payload_bytes().
	stripeMaxBody = 512 << 10

	// stripeTolerance is the replay window of Stripe's libraries and of Ghost.
	stripeTolerance = 300 * time.Second

	// stripeMaxType keeps "stripe." + type within the 50 characters an event name
	// (and a webhook's event column) may have.
	stripeMaxType = 50 - len("stripe.")

	// stripeMaxID is Stripe's documented maximum length of an object id.
	stripeMaxID = 255

	// stripeStoreTimeout bounds the database work of one request. Past it the answer
	// is 500, nothing is stored, and Stripe resends: better than holding Stripe's
	// connection until Stripe gives up on its own.
	stripeStoreTimeout = 10 * time.Second
)

// stripeTypeRE is the shape relay.is_known_event accepts after "stripe.", so that a type
// passing here can never make the emit fail.
var stripeTypeRE = regexp.MustCompile(`^[a-z0-9_]+(\.[a-z0-9_]+)*$`)

// One statement each so that the emit runs only for a row this request inserted: a
// redelivery conflicts on the primary key (waiting for a concurrent twin to commit or
// roll back) and stops before anything is emitted.
const (
	stripeInsertSQL = `INSERT INTO relay.stripe_events
    (id, type, livemode, api_version, stripe_created_at, raw)
VALUES ($1, $2, $3, $4, to_timestamp($5::bigint), $6::json)
ON CONFLICT (id) DO NOTHING`

	stripeEmitSQL = `UPDATE relay.stripe_events
   SET event_id = relay.emit_internal('stripe.' || type, raw, 'stripe')
 WHERE id = $1
RETURNING event_id::text`
)

// stripeEndpoint serves POST /members/webhooks/stripe[/].
type stripeEndpoint struct {
	pool   *pgxpool.Pool
	secret string
	log    zerolog.Logger
	now    func() time.Time
}

// registerStripe mounts the endpoint on both spellings of the path: Stripe does not
// follow redirects for webhooks, so the slash-less form must not get ServeMux's 301.
func registerStripe(mux *http.ServeMux, d Deps) {
	h := &stripeEndpoint{
		pool:   d.Pool,
		secret: d.StripeSecret,
		log:    d.Log.With().Str("component", "stripe_endpoint").Logger(),
		now:    time.Now,
	}
	mux.Handle("POST /members/webhooks/stripe/{$}", h)
	mux.Handle("POST /members/webhooks/stripe", h)
}

// stripeEvent is the part of a Stripe event the relay reads; the rest travels untouched
// in the raw body.
type stripeEvent struct {
	ID         string  `json:"id"`
	Type       string  `json:"type"`
	Livemode   bool    `json:"livemode"`
	APIVersion *string `json:"api_version"`
	Created    *int64  `json:"created"`
}

// stripeReply is the JSON body of every answer. Stripe shows it in its dashboard, which
// is where an operator looks first when deliveries fail.
type stripeReply struct {
	Received  bool   `json:"received"`
	Duplicate bool   `json:"duplicate"`
	Emitted   bool   `json:"emitted"`
	EventID   string `json:"event_id,omitempty"`
	Reason    string `json:"reason,omitempty"`
	Error     string `json:"error,omitempty"`
}

func (h *stripeEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	log := h.log.With().Str("remote", r.RemoteAddr).Logger()
	fail := func(ref *stripeRefusal) {
		ev := log.Warn()
		if ref.status >= 500 {
			ev = log.Error()
		}
		// err never carries the secret or the header's signatures: VerifyStripe
		// reports counts and timestamps only.
		ev.Err(ref.err).Int("status", ref.status).Str("reason", ref.msg).Msg("stripe webhook refused")
		writeJSON(w, ref.status, stripeReply{Error: ref.msg})
	}
	body, ref := h.verifiedBody(w, r)
	if ref != nil {
		fail(ref)
		return
	}
	ev, err := parseStripeEvent(body)
	if err != nil {
		fail(&stripeRefusal{http.StatusBadRequest, err.Error(), nil})
		return
	}
	log = log.With().Str("stripe_event_id", ev.ID).Str("stripe_type", ev.Type).Bool("livemode", ev.Livemode).Logger()

	// An event whose name would be too long is still stored (it is authentic, and a
	// 4xx would make Stripe retry it for days and eventually disable the endpoint for
	// every event) but cannot be emitted under the 50-character event-name rule.
	emit := len(ev.Type) <= stripeMaxType
	ctx, cancel := context.WithTimeout(r.Context(), stripeStoreTimeout)
	defer cancel()
	eventID, dup, err := h.store(ctx, ev, body, emit)
	if err != nil {
		fail(&stripeRefusal{http.StatusInternalServerError, "could not store the event; Stripe will resend it", err})
		return
	}

	reply := stripeReply{Received: true, Duplicate: dup, Emitted: eventID != "", EventID: eventID}
	switch {
	case dup:
		log.Info().Msg("stripe event already received; stored and emitted nothing new")
	case !emit:
		reply.Reason = fmt.Sprintf("stored but not emitted: stripe.%s is longer than 50 characters", ev.Type)
		log.Warn().Msg("stripe event stored but not emitted: its event name would exceed 50 characters")
	default:
		log.Info().Str("event_id", eventID).Msg("stripe event stored and emitted")
	}
	writeJSON(w, http.StatusOK, reply)
}

// stripeRefusal is a request the endpoint turns down: the status Stripe gets, the
// reason it is told (and that is logged), and the error behind it, if any.
type stripeRefusal struct {
	status int
	msg    string
	err    error
}

// verifiedBody reads the body and checks its Stripe-Signature, in the order that
// costs an unauthenticated caller least: configuration, header, size, signature.
func (h *stripeEndpoint) verifiedBody(w http.ResponseWriter, r *http.Request) ([]byte, *stripeRefusal) {
	if h.secret == "" {
		return nil, &stripeRefusal{http.StatusServiceUnavailable, "Stripe endpoint not configured: set WEBHOOK_SECRET", nil}
	}
	header := r.Header.Get("Stripe-Signature")
	if strings.TrimSpace(header) == "" {
		return nil, &stripeRefusal{http.StatusBadRequest, "missing Stripe-Signature header", nil}
	}
	body, err := readBody(w, r, stripeMaxBody)
	switch {
	case errors.Is(err, errTooLarge):
		return nil, &stripeRefusal{http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", stripeMaxBody), nil}
	case err != nil:
		return nil, &stripeRefusal{http.StatusBadRequest, "could not read body", err}
	case len(body) == 0:
		return nil, &stripeRefusal{http.StatusBadRequest, "missing body", nil}
	}
	if err := signing.VerifyStripe(header, body, h.secret, stripeTolerance, h.now()); err != nil {
		switch {
		case errors.Is(err, signing.ErrMissingSignature):
			return nil, &stripeRefusal{http.StatusBadRequest, "missing Stripe-Signature header", err}
		case errors.Is(err, signing.ErrStaleSignature):
			return nil, &stripeRefusal{http.StatusUnauthorized, "signature timestamp outside the 300 s tolerance", err}
		default:
			return nil, &stripeRefusal{http.StatusUnauthorized, "invalid signature", err}
		}
	}
	return body, nil
}

// parseStripeEvent reads and checks the fields that are stored in their own columns.
// The body is authentic by now, so a failure here is a malformed event, answered 400.
func parseStripeEvent(body []byte) (stripeEvent, error) {
	var ev stripeEvent
	// PostgreSQL's json type refuses invalid UTF-8; catching it here makes it a 400
	// instead of a 500 that Stripe would retry forever.
	if !utf8.Valid(body) || !json.Valid(body) {
		return ev, errors.New("body is not valid UTF-8 JSON")
	}
	if err := json.Unmarshal(body, &ev); err != nil {
		return ev, fmt.Errorf("body is not a Stripe event: %w", err)
	}
	switch {
	case ev.ID == "":
		return ev, errors.New("event has no id")
	case len(ev.ID) > stripeMaxID || !stripePrintable(ev.ID):
		return ev, errors.New("event id is not a Stripe id")
	case ev.Type == "":
		return ev, errors.New("event has no type")
	case len(ev.Type) > stripeMaxID || !stripeTypeRE.MatchString(ev.Type):
		return ev, errors.New("event type must be lowercase words of a-z, 0-9 and _ separated by dots")
	case ev.APIVersion != nil && (len(*ev.APIVersion) > stripeMaxID || !stripePrintable(*ev.APIVersion)):
		return ev, errors.New("event api_version is not a Stripe API version")
	case ev.Created != nil && (*ev.Created < 0 || *ev.Created > 253402300799): // year 9999
		return ev, errors.New("event created is not a plausible unix time")
	}
	return ev, nil
}

// stripePrintable rejects control characters; a NUL in particular cannot be stored in a
// PostgreSQL text column.
func stripePrintable(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
}

// store records ev and, when emit is set, emits it in the same transaction. It returns
// the outbox event id ("" when nothing was emitted) and whether ev.ID was already stored.
func (h *stripeEndpoint) store(ctx context.Context, ev stripeEvent, body []byte, emit bool) (eventID string, duplicate bool, err error) {
	err = pgx.BeginFunc(ctx, h.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, stripeInsertSQL, ev.ID, ev.Type, ev.Livemode, ev.APIVersion, ev.Created, body)
		if err != nil {
			return fmt.Errorf("insert into relay.stripe_events: %w", err)
		}
		if tag.RowsAffected() == 0 {
			duplicate = true
			return nil
		}
		if !emit {
			return nil
		}
		if err := tx.QueryRow(ctx, stripeEmitSQL, ev.ID).Scan(&eventID); err != nil {
			return fmt.Errorf("emit stripe.%s: %w", ev.Type, err)
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("store stripe event %s: %w", ev.ID, err)
	}
	return eventID, duplicate, nil
}
