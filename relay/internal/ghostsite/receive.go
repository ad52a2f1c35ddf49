package ghostsite

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

	"github.com/relayhq/relay/relay/signing"
)

// Why an inbound request was refused: the values of the reason label of
// relay_ghost_inbound_total and of the warn log line. Ghost does not retry, so every
// refusal is an event lost unless someone looks.
const (
	ReasonUnknownSite   = "unknown_site"
	ReasonUnknownEvent  = "unknown_event"
	ReasonBadSignature  = "bad_signature"
	ReasonBadBody       = "bad_body"
	ReasonEventMismatch = "event_mismatch"
	ReasonTooLarge      = "too_large"
	ReasonUnavailable   = "unavailable"
)

// Reasons lists every refusal reason, for metrics that start every series at 0.
var Reasons = []string{ReasonUnknownSite, ReasonUnknownEvent, ReasonBadSignature, ReasonBadBody,
	ReasonEventMismatch, ReasonTooLarge, ReasonUnavailable}

// SignatureTolerance is how far X-Ghost-Signature's timestamp may be from now.
const SignatureTolerance = 5 * time.Minute

// MaxBody is the largest body accepted (relay.max_payload_bytes()).
const MaxBody = 1 << 20

// Refused is a request Receive turned down: Status is the HTTP answer, Reason the label.
type Refused struct {
	Status int
	Reason string
	Msg    string
	Err    error
}

func (r *Refused) Error() string {
	if r.Err != nil {
		return r.Msg + ": " + r.Err.Error()
	}
	return r.Msg
}

func (r *Refused) Unwrap() error { return r.Err }

func refuse(status int, reason, msg string, err error) error {
	return &Refused{Status: status, Reason: reason, Msg: msg, Err: err}
}

var (
	siteIDPattern         = regexp.MustCompile(`^[0-9a-f]{24}$`)
	contentVersionPattern = regexp.MustCompile(`^v[0-9]{1,3}(\.[0-9]{1,4}){0,2}$`)
)

// Receive takes one webhook POST of a connected site for event: it checks the site and
// the event, verifies X-Ghost-Signature ("sha256=<hex HMAC-SHA256(secret, body + t)>,
// t=<ms>", SignatureTolerance, constant-time) with the site's inbound secret, checks
// the body (JSON; its "event", which Ghost 6 sends, must be the path's), then stores the
// exact bytes and emits the event, with source ghost:<site id>, in one transaction. It
// returns the event id once that transaction committed; every refusal is a *Refused.
func (s Store) Receive(ctx context.Context, siteID, event string, body []byte, signature, contentVersion string, now time.Time) (string, error) {
	if !siteIDPattern.MatchString(siteID) {
		return "", refuse(http.StatusNotFound, ReasonUnknownSite, "no connected Ghost site "+clip(siteID), nil)
	}
	var known bool
	var c secretColumns
	var id string
	err := s.Pool.QueryRow(ctx, `SELECT s.id, s.admin_secret_plain, s.admin_secret_sealed, s.inbound_secret_plain,
			s.inbound_secret_sealed, s.kek_fingerprint,
			EXISTS (SELECT 1 FROM relay.event_types t WHERE t.name = $2 AND t.source = 'ghost')
		FROM relay.ghost_sites s WHERE s.id = $1`, siteID, event).
		Scan(&id, &c.adminPlain, &c.adminSealed, &c.inboundPlain, &c.inboundSealed, &c.fingerprint, &known)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", refuse(http.StatusNotFound, ReasonUnknownSite, "no connected Ghost site "+siteID, nil)
	}
	if err != nil {
		return "", refuse(http.StatusServiceUnavailable, ReasonUnavailable, "database unavailable", err)
	}
	if !known {
		return "", refuse(http.StatusBadRequest, ReasonUnknownEvent, fmt.Sprintf("%q is not one of Ghost's events", clip(event)), nil)
	}
	_, secret, err := s.open(id, c)
	if err != nil {
		// The relay's own configuration (a missing or different KEK), not the caller's.
		return "", refuse(http.StatusServiceUnavailable, ReasonUnavailable, "cannot read the site's inbound secret", err)
	}
	if err := signing.VerifyGhost(secret, signature, body, SignatureTolerance, now); err != nil {
		msg := "invalid X-Ghost-Signature"
		switch {
		case errors.Is(err, signing.ErrMissingSignature):
			msg = "missing X-Ghost-Signature"
		case errors.Is(err, signing.ErrStaleSignature):
			msg = "X-Ghost-Signature timestamp outside the 5-minute tolerance"
		}
		return "", refuse(http.StatusUnauthorized, ReasonBadSignature, msg, err)
	}
	if !utf8.Valid(body) || !json.Valid(body) {
		return "", refuse(http.StatusBadRequest, ReasonBadBody, "body is not UTF-8 JSON", nil)
	}
	var head struct {
		Event *string `json:"event"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return "", refuse(http.StatusBadRequest, ReasonBadBody, "body is not a JSON object", nil)
	}
	if head.Event != nil && *head.Event != event {
		return "", refuse(http.StatusBadRequest, ReasonEventMismatch,
			fmt.Sprintf("body says event %q, the URL %q", clip(*head.Event), event), nil)
	}
	var cv *string
	if contentVersionPattern.MatchString(contentVersion) {
		cv = &contentVersion
	}
	var eventID string
	err = pgx.BeginFunc(ctx, s.Pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `SELECT relay.emit_internal($1, $2::json, 'ghost:' || $3, $4)::text`,
			event, string(body), id, cv).Scan(&eventID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE relay.ghost_sites SET received_count = received_count + 1,
			last_received_at = now(), last_received_event = $2, content_version = coalesce($3, content_version)
			WHERE id = $1`, id, event, cv)
		return err
	})
	if err != nil {
		return "", refuse(http.StatusServiceUnavailable, ReasonUnavailable, "could not store the event", err)
	}
	return eventID, nil
}

// clip keeps what is echoed back of a caller's input short and printable.
func clip(s string) string {
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
