package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"

	"github.com/relayhq/relay/relay/webhook"
)

// The Ghost-compatible Admin API for webhooks (SPEC §6): the paths, bodies, status
// codes and error shape of Ghost's own, so that Ghost's Admin API clients (for example
// @tryghost/admin-api's webhooks.add/edit/delete) work against the relay unchanged.
//
//	POST   /ghost/api/admin/webhooks/       {"webhooks":[{...}]} -> 201 {"webhooks":[{...}]}
//	PUT    /ghost/api/admin/webhooks/{id}/  {"webhooks":[{...}]} -> 200 {"webhooks":[{...}]}
//	DELETE /ghost/api/admin/webhooks/{id}/                       -> 204
//	GET    /ghost/api/admin/webhooks/  (ours; Ghost reads them through integrations)
//
// Every path also answers without the trailing slash and under a version prefix
// (/ghost/api/v3/admin/...), which clients pinned to an old Ghost version use.

// maxAdminBody bounds request bodies; a webhook is a few hundred bytes.
const maxAdminBody = 64 << 10

// ghostVersion is the version segment of legacy paths: v2, v3.0, canary, ...
var ghostVersion = regexp.MustCompile(`^(v[0-9]+(\.[0-9]+)?|canary)$`)

func registerAdmin(mux *http.ServeMux, d Deps) {
	for _, p := range []string{"/ghost/api/admin/webhooks", "/ghost/api/{version}/admin/webhooks"} {
		for _, slash := range []string{"", "/{$}"} {
			mux.HandleFunc("GET "+p+slash, d.requireKey(d.adminBrowse))
			mux.HandleFunc("POST "+p+slash, d.requireKey(d.adminAdd))
		}
		for _, slash := range []string{"", "/{$}"} {
			mux.HandleFunc("GET "+p+"/{id}"+slash, d.requireKey(d.adminRead))
			mux.HandleFunc("PUT "+p+"/{id}"+slash, d.requireKey(d.adminEdit))
			mux.HandleFunc("DELETE "+p+"/{id}"+slash, d.requireKey(d.adminDelete))
		}
	}
}

// ghostError is one entry of Ghost's error body, {"errors":[{...}]}.
type ghostError struct {
	Message  string  `json:"message"`
	Context  *string `json:"context"`
	Type     string  `json:"type"`
	Property *string `json:"property,omitempty"`
}

func writeGhostError(w http.ResponseWriter, status int, e ghostError) {
	writeJSON(w, status, map[string][]ghostError{"errors": {e}})
}

func notFound(w http.ResponseWriter, what string) {
	writeGhostError(w, http.StatusNotFound, ghostError{Type: "NotFoundError", Message: what + " not found."})
}

func validationFailed(w http.ResponseWriter, ve *webhook.ValidationError) {
	e := ghostError{Type: "ValidationError", Message: ve.Message}
	if ve.Field != "" {
		p := ve.Field
		e.Property = &p
	}
	writeGhostError(w, http.StatusUnprocessableEntity, e)
}

func internalError(d Deps, w http.ResponseWriter, r *http.Request, err error) {
	d.Log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("Admin API request failed")
	writeGhostError(w, http.StatusInternalServerError, ghostError{Type: "InternalServerError", Message: "An unexpected error occurred."})
}

// versionOK refuses a legacy version segment that no Ghost ever had.
func versionOK(w http.ResponseWriter, r *http.Request) bool {
	if v := r.PathValue("version"); v != "" && !ghostVersion.MatchString(v) {
		writeGhostError(w, http.StatusNotFound, ghostError{Type: "NotFoundError", Message: "Resource not found"})
		return false
	}
	return true
}

// ghostTime is Ghost's timestamp format: UTC with milliseconds.
const ghostTime = "2006-01-02T15:04:05.000Z"

// ghostWebhook is a webhook as Ghost serialises it, plus the relay's status and
// disabled_reason. The secret is included, as Ghost includes it: a holder of an Admin
// API key may set it anyway.
type ghostWebhook struct {
	ID                  string  `json:"id"`
	Event               string  `json:"event"`
	TargetURL           string  `json:"target_url"`
	Name                *string `json:"name"`
	Secret              *string `json:"secret"`
	APIVersion          string  `json:"api_version"`
	IntegrationID       *string `json:"integration_id"`
	Status              string  `json:"status"`
	DisabledReason      *string `json:"disabled_reason"`
	LastTriggeredAt     *string `json:"last_triggered_at"`
	LastTriggeredStatus *string `json:"last_triggered_status"`
	LastTriggeredError  *string `json:"last_triggered_error"`
	CreatedAt           string  `json:"created_at"`
	UpdatedAt           string  `json:"updated_at"`
}

func toGhost(w webhook.Webhook) ghostWebhook {
	g := ghostWebhook{
		ID: w.ID, Event: w.Event, TargetURL: w.TargetURL, Name: w.Name, Secret: w.Secret,
		APIVersion: w.APIVersion, IntegrationID: w.IntegrationID, Status: w.Status,
		DisabledReason: w.DisabledReason, LastTriggeredStatus: w.LastTriggeredStatus,
		LastTriggeredError: w.LastTriggeredError,
		CreatedAt:          w.CreatedAt.UTC().Format(ghostTime),
		UpdatedAt:          w.UpdatedAt.UTC().Format(ghostTime),
	}
	if w.LastTriggeredAt != nil {
		s := w.LastTriggeredAt.UTC().Format(ghostTime)
		g.LastTriggeredAt = &s
	}
	return g
}

// webhookInput is what a client may send for one webhook. Fields Ghost serialises but
// nobody may set (id, timestamps, last_triggered_*) are ignored, as Ghost ignores them.
type webhookInput struct {
	Event         *string `json:"event"`
	TargetURL     *string `json:"target_url"`
	Name          *string `json:"name"`
	Secret        *string `json:"secret"`
	APIVersion    *string `json:"api_version"`
	IntegrationID *string `json:"integration_id"`
	// Status is the relay's: "active" re-enables a disabled webhook. Edit only.
	Status *string `json:"status"`
}

func (in webhookInput) input() webhook.Input {
	return webhook.Input{
		Event: in.Event, TargetURL: in.TargetURL, Name: in.Name, Secret: in.Secret,
		APIVersion: in.APIVersion, IntegrationID: in.IntegrationID, Status: in.Status,
	}
}

// errBadBody is a body that is not what Ghost accepts at all (as opposed to a field
// that fails validation): Ghost answers it 400.
type errBadBody struct{ msg string }

func (e *errBadBody) Error() string { return e.msg }

// readWebhookBody reads {"webhooks":[{...}]} with exactly one webhook.
func readWebhookBody(w http.ResponseWriter, r *http.Request) (webhookInput, error) {
	var in webhookInput
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err != nil {
		return in, err
	}
	var root struct {
		Webhooks json.RawMessage `json:"webhooks"`
	}
	if err := json.Unmarshal(body, &root); err != nil {
		return in, &errBadBody{"Request body is not valid JSON."}
	}
	var list []json.RawMessage
	if len(root.Webhooks) == 0 || string(root.Webhooks) == "null" || json.Unmarshal(root.Webhooks, &list) != nil {
		return in, &errBadBody{"No root key ('webhooks') provided."}
	}
	if len(list) != 1 {
		return in, &webhook.ValidationError{Field: "webhooks", Message: fmt.Sprintf("Validation error, cannot save webhook. Expected exactly one webhook, got %d.", len(list))}
	}
	if err := json.Unmarshal(list[0], &in); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return in, &webhook.ValidationError{Field: te.Field, Message: fmt.Sprintf("Validation error, cannot save webhook. %s must be a string.", te.Field)}
		}
		return in, &errBadBody{"Each webhook must be a JSON object."}
	}
	return in, nil
}

// answerError maps an error from reading or saving a webhook to Ghost's responses.
func (d Deps) answerError(w http.ResponseWriter, r *http.Request, err error) {
	var ve *webhook.ValidationError
	var bad *errBadBody
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &ve):
		validationFailed(w, ve)
	case errors.As(err, &bad):
		writeGhostError(w, http.StatusBadRequest, ghostError{Type: "BadRequestError", Message: bad.msg})
	case errors.As(err, &tooBig):
		writeGhostError(w, http.StatusRequestEntityTooLarge, ghostError{Type: "RequestEntityTooLargeError",
			Message: fmt.Sprintf("Request is larger than the maximum the server allows (%d bytes).", maxAdminBody)})
	case errors.Is(err, webhook.ErrNotFound):
		notFound(w, "Webhook")
	default:
		internalError(d, w, r, err)
	}
}

func (d Deps) adminBrowse(w http.ResponseWriter, r *http.Request) {
	if !versionOK(w, r) {
		return
	}
	list, err := webhook.Store{Pool: d.Pool}.List(r.Context())
	if err != nil {
		internalError(d, w, r, err)
		return
	}
	out := make([]ghostWebhook, len(list))
	for i, wh := range list {
		out[i] = toGhost(wh)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"webhooks": out,
		"meta": map[string]any{"pagination": map[string]any{
			"page": 1, "limit": "all", "pages": 1, "total": len(out), "next": nil, "prev": nil,
		}},
	})
}

func (d Deps) adminRead(w http.ResponseWriter, r *http.Request) {
	if !versionOK(w, r) {
		return
	}
	wh, err := webhook.Store{Pool: d.Pool}.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		d.answerError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]ghostWebhook{"webhooks": {toGhost(wh)}})
}

func (d Deps) adminAdd(w http.ResponseWriter, r *http.Request) {
	if !versionOK(w, r) {
		return
	}
	in, err := readWebhookBody(w, r)
	if err != nil {
		d.answerError(w, r, err)
		return
	}
	// As in Ghost, a webhook created with an integration's key belongs to that
	// integration unless the body says otherwise; here the key plays the integration.
	if in.IntegrationID == nil || *in.IntegrationID == "" {
		k := keyID(r.Context())
		in.IntegrationID = &k
	}
	wh, err := webhook.Store{Pool: d.Pool}.Add(r.Context(), in.input())
	if err != nil {
		d.answerError(w, r, err)
		return
	}
	d.Log.Info().Str("key_id", keyID(r.Context())).Str("webhook_id", wh.ID).Str("event", wh.Event).
		Msg("webhook added through the Admin API")
	writeJSON(w, http.StatusCreated, map[string][]ghostWebhook{"webhooks": {toGhost(wh)}})
}

func (d Deps) adminEdit(w http.ResponseWriter, r *http.Request) {
	if !versionOK(w, r) {
		return
	}
	in, err := readWebhookBody(w, r)
	if err != nil {
		d.answerError(w, r, err)
		return
	}
	id := r.PathValue("id")
	wh, err := webhook.Store{Pool: d.Pool}.Edit(r.Context(), id, in.input())
	if err != nil {
		d.answerError(w, r, err)
		return
	}
	d.Log.Info().Str("key_id", keyID(r.Context())).Str("webhook_id", wh.ID).Str("event", wh.Event).
		Str("status", wh.Status).Msg("webhook edited through the Admin API")
	writeJSON(w, http.StatusOK, map[string][]ghostWebhook{"webhooks": {toGhost(wh)}})
}

func (d Deps) adminDelete(w http.ResponseWriter, r *http.Request) {
	if !versionOK(w, r) {
		return
	}
	id := r.PathValue("id")
	if err := (webhook.Store{Pool: d.Pool}).Remove(r.Context(), id); err != nil {
		d.answerError(w, r, err)
		return
	}
	d.Log.Info().Str("key_id", keyID(r.Context())).Str("webhook_id", id).Msg("webhook deleted through the Admin API")
	w.WriteHeader(http.StatusNoContent)
}
