package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/relayhq/relay/relay/internal/audit"
	"github.com/relayhq/relay/relay/internal/invalid"
	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/internal/webhook"
)

// Replays through the audit API (README: "Replay"):
//
//	POST /relay/v1/replays              {"webhook_id", "since", "until"?, "event"?} -> 202 {"replay"}
//	GET  /relay/v1/replays              ?webhook=&limit= -> {"replays"}, newest first
//	GET  /relay/v1/replays/{id}         -> {"replay"}
//	POST /relay/v1/replays/{id}/cancel  -> {"replay"}
//
// A key replays only to its own integration's webhooks, as it edits only those through
// the Admin API. Stripe-Signature on replayed Stripe events is the CLI's alone
// (--stripe-signature): through the API, a key could otherwise get Ghost-valid signed
// payment events sent again.
func registerReplays(mux *http.ServeMux, d Deps) {
	for _, slash := range []string{"", "/{$}"} {
		mux.HandleFunc("POST /relay/v1/replays"+slash, d.requireKey(d.replayCreate))
		mux.HandleFunc("GET /relay/v1/replays"+slash, d.requireKey(d.replayList))
		mux.HandleFunc("GET /relay/v1/replays/{id}"+slash, d.requireKey(d.replayGet))
		mux.HandleFunc("POST /relay/v1/replays/{id}/cancel"+slash, d.requireKey(d.replayCancel))
	}
}

// replayBodyLimit bounds a replay request's body: four short fields.
const replayBodyLimit = 4 << 10

type replayBody struct {
	WebhookID string `json:"webhook_id"`
	Since     string `json:"since"`
	Until     string `json:"until"`
	Event     string `json:"event"`
}

func (d Deps) replayCreate(w http.ResponseWriter, r *http.Request) {
	raw, err := readBody(w, r, replayBodyLimit)
	if errors.Is(err, errTooLarge) {
		writeAPIError(w, actionNone, &apiError{Type: "RequestEntityTooLargeError", Status: http.StatusRequestEntityTooLarge,
			Message: "a replay request is a few short fields; this body is over 4 KiB"})
		return
	} else if err != nil {
		d.auditError(w, r, err)
		return
	}
	var body replayBody
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		d.auditError(w, r, invalid.New("body", "a JSON object with webhook_id, since and optionally until and event: %s", clip(err.Error(), 120)))
		return
	}
	if body.WebhookID == "" {
		d.auditError(w, r, invalid.New("webhook_id", "webhook_id is required"))
		return
	}
	req := store.ReplayRequest{WebhookID: body.WebhookID, EventPattern: body.Event, RequestedBy: keyID(r.Context())}
	if req.Since, req.Until, err = parseSinceUntil(body.Since, body.Until, time.Now()); err != nil {
		d.auditError(w, r, err)
		return
	}
	if !d.ownWebhook(w, r, actionNone, "add", body.WebhookID) {
		return
	}
	rp, err := store.CreateReplay(r.Context(), d.Pool, req)
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	d.Log.Info().Str("key_id", keyID(r.Context())).Int64("replay_id", rp.ID).Str("webhook_id", rp.WebhookID).
		Time("since", rp.Since).Time("until", rp.Until).Msg("replay started through the audit API")
	writeJSON(w, http.StatusAccepted, map[string]any{"replay": rp})
}

// ownReplay reads replay {id} if the caller's integration owns its webhook; a replay of
// someone else's webhook is answered as one that does not exist.
func (d Deps) ownReplay(w http.ResponseWriter, r *http.Request) (store.Replay, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		d.auditError(w, r, audit.ErrNotFound)
		return store.Replay{}, false
	}
	rp, err := store.GetReplay(r.Context(), d.Pool, id)
	if err == nil && !d.owns(r, rp.WebhookID) {
		err = store.ErrNotFound
	}
	if err != nil {
		d.auditError(w, r, err)
		return store.Replay{}, false
	}
	return rp, true
}

// owns says whether the caller's integration owns webhook id (a deleted webhook is no
// one's).
func (d Deps) owns(r *http.Request, webhookID string) bool {
	owner, err := webhook.Store{Pool: d.Pool}.Owner(r.Context(), webhookID)
	return err == nil && owner != nil && *owner == caller(r.Context()).IntegrationID
}

func (d Deps) replayGet(w http.ResponseWriter, r *http.Request) {
	if rp, ok := d.ownReplay(w, r); ok {
		writeJSON(w, http.StatusOK, map[string]any{"replay": rp})
	}
}

func (d Deps) replayCancel(w http.ResponseWriter, r *http.Request) {
	rp, ok := d.ownReplay(w, r)
	if !ok {
		return
	}
	rp, err := store.CancelReplay(r.Context(), d.Pool, rp.ID, "cancelled through the audit API by key "+keyID(r.Context()))
	if errors.Is(err, store.ErrReplayFinished) {
		writeAPIError(w, actionNone, &apiError{Type: "ConflictError", Message: err.Error()})
		return
	}
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	d.Log.Info().Str("key_id", keyID(r.Context())).Int64("replay_id", rp.ID).Msg("replay cancelled through the audit API")
	writeJSON(w, http.StatusOK, map[string]any{"replay": rp})
}

func (d Deps) replayList(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	for k := range q {
		if k != "webhook" && k != "limit" {
			d.auditError(w, r, &invalid.Error{Field: k, Message: "unknown query parameter " + strconv.Quote(clip(k, 40))})
			return
		}
	}
	limit := 50
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			d.auditError(w, r, &invalid.Error{Field: "limit", Message: "limit must be a number from 1 to 500"})
			return
		}
		limit = n
	}
	// Only the caller's own webhooks' replays.
	out, err := store.ListReplays(r.Context(), d.Pool, store.ReplayFilter{WebhookID: q.Get("webhook"),
		IntegrationID: caller(r.Context()).IntegrationID, Limit: limit})
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	if out == nil {
		out = []store.Replay{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"replays": out})
}
