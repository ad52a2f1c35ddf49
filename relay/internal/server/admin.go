package server

import (
	"errors"
	"net/http"

	"github.com/relayhq/relay/relay/internal/invalid"
	"github.com/relayhq/relay/relay/internal/webhook"
)

// The Ghost-compatible Admin API for webhooks (README: "Admin API (Ghost-compatible)"): the paths, bodies, status
// codes and error shape of Ghost's own, so that Ghost's Admin API clients (for example
// @tryghost/admin-api's webhooks.add/edit/delete) work against the relay unchanged.
//
//	POST   /ghost/api/admin/webhooks/       {"webhooks":[{...}]} -> 201 {"webhooks":[{...}]}
//	PUT    /ghost/api/admin/webhooks/{id}/  {"webhooks":[{...}]} -> 200 {"webhooks":[{...}]}
//	DELETE /ghost/api/admin/webhooks/{id}/                       -> 204
//	GET    /ghost/api/admin/webhooks/[{id}/]  (ours; Ghost reads them through integrations)
//
// Every path also answers without the trailing slash and under the version prefixes
// Ghost still takes (/ghost/api/v3/admin/...), which clients pinned to an old Ghost
// version use. A key acts as its integration: it adds webhooks to it, and edits,
// deletes and reads only its own. Input is checked as Ghost checks it (ghostinput.go),
// errors answered as Ghost answers them (ghosterr.go).

func registerAdmin(mux *http.ServeMux, d Deps) {
	for _, p := range []string{"/ghost/api/admin/webhooks", "/ghost/api/{version}/admin/webhooks"} {
		for _, slash := range []string{"", "/{$}"} {
			mux.HandleFunc("GET "+p+slash, d.ghostRoute(d.adminBrowse))
			mux.HandleFunc("POST "+p+slash, d.ghostRoute(d.adminAdd))
			mux.HandleFunc("GET "+p+"/{id}"+slash, d.ghostRoute(d.adminRead))
			mux.HandleFunc("PUT "+p+"/{id}"+slash, d.ghostRoute(d.adminEdit))
			mux.HandleFunc("DELETE "+p+"/{id}"+slash, d.ghostRoute(d.adminDelete))
		}
	}
	// Everything else under Ghost's API prefix is answered as Ghost answers a route it
	// does not have (no token needed to learn that).
	mux.HandleFunc("/ghost/api/", resourceNotFound)
}

// ghostRoute takes a request only under the paths Ghost routes: the unversioned API or
// a legacy version prefix Ghost still rewrites (v2, v3, v4, canary); anything else is an
// unknown route, answered before any token is looked at, as in Ghost. Then the token.
func (d Deps) ghostRoute(next http.HandlerFunc) http.HandlerFunc {
	withKey := d.requireKey(next)
	return func(w http.ResponseWriter, r *http.Request) {
		ghostHeaders(w)
		if v := r.PathValue("version"); v != "" && !legacyVersions[v] {
			resourceNotFound(w, r)
			return
		}
		withKey(w, r)
	}
}

// storeError answers an error from the webhook store for a request at action.
func (d Deps) storeError(w http.ResponseWriter, r *http.Request, action string, err error) {
	var ve *invalid.Error
	switch {
	case errors.Is(err, webhook.ErrDuplicate):
		writeAPIError(w, action, &apiError{Type: "ValidationError", Message: msgDuplicate})
	case errors.Is(err, webhook.ErrNotFound):
		writeAPIError(w, action, &apiError{Type: "NotFoundError", Message: msgWebhookNotFound})
	case errors.Is(err, webhook.ErrUnknownIntegration):
		writeAPIError(w, action, &apiError{Type: "ValidationError", Message: "Validation failed for 'integration_id'.",
			Context: "'integration_id' value does not match any existing integration.",
			Help:    "Provide the 'integration_id' of an existing integration."})
	case errors.As(err, &ve):
		// The relay's own rules, which Ghost does not have (see the README's list of
		// deliberate differences): Ghost's shape, the relay's reason.
		writeAPIError(w, action, &apiError{Type: "ValidationError", Message: ve.Message, Property: ve.Field, Help: relayRuleHelp[ve.Field]})
	default:
		internalError(d, w, r, action, err)
	}
}

// relayRuleHelp says what the relay accepts where it is stricter than Ghost.
var relayRuleHelp = map[string]string{
	"event":      "Use an event the relay knows (relay.event_types), a trailing wildcard such as post.*, or *.",
	"target_url": "The relay delivers to absolute http:// and https:// URLs only.",
	"secret":     "Use any text, or a Standard Webhooks secret: whsec_ followed by base64.",
}

// internalError is Ghost's answer to a failure that is not the caller's; the cause is
// logged, never shown.
func internalError(d Deps, w http.ResponseWriter, r *http.Request, action string, err error) {
	d.Log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("Admin API request failed")
	writeAPIError(w, action, &apiError{Type: "InternalServerError", Message: msgUnexpected, Code: "UNEXPECTED_ERROR"})
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

// ownWebhook is the permission step of Ghost's edit and destroy (and of the relay's
// read): the webhook must exist (404) and belong to the calling integration (403, with
// Ghost's text for method). A webhook of no integration is the operator's: no key may
// touch it, as in Ghost, where every webhook has an integration and a key only reaches
// its own. The webhook's integration never changes after creation, so checking before
// acting cannot race with a change of owner.
func (d Deps) ownWebhook(w http.ResponseWriter, r *http.Request, action, method, id string) bool {
	owner, err := webhook.Store{Pool: d.Pool}.Owner(r.Context(), id)
	if err != nil {
		d.storeError(w, r, action, err)
		return false
	}
	if owner == nil || *owner != caller(r.Context()).IntegrationID {
		writeAPIError(w, action, noPermission(method))
		return false
	}
	return true
}

func (d Deps) adminBrowse(w http.ResponseWriter, r *http.Request) {
	list, err := webhook.Store{Pool: d.Pool}.ListOf(r.Context(), caller(r.Context()).IntegrationID)
	if err != nil {
		internalError(d, w, r, actionBrowse, err)
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
	id := r.PathValue("id")
	if e := checkGhostID(id); e != nil {
		writeAPIError(w, actionRead, e)
		return
	}
	if !d.ownWebhook(w, r, actionRead, "read", id) {
		return
	}
	wh, err := webhook.Store{Pool: d.Pool}.Get(r.Context(), id)
	if err != nil {
		d.storeError(w, r, actionRead, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string][]ghostWebhook{"webhooks": {toGhost(wh)}})
}

func (d Deps) adminAdd(w http.ResponseWriter, r *http.Request) {
	data, e := readGhostBody(w, r)
	if e != nil {
		writeAPIError(w, actionNone, e)
		return
	}
	if e := validateAddBody(data); e != nil {
		writeAPIError(w, actionAdd, e)
		return
	}
	in, e := webhookFields(data, false)
	if e != nil {
		writeAPIError(w, actionAdd, e)
		return
	}
	// As in Ghost (the webhooks input serializer), a webhook added with an
	// integration's key belongs to that integration, whatever the body says.
	who := caller(r.Context())
	in.IntegrationID = &who.IntegrationID
	wh, err := webhook.Store{Pool: d.Pool}.Add(r.Context(), in)
	if err != nil {
		d.storeError(w, r, actionAdd, err)
		return
	}
	d.Log.Info().Str("key_id", who.KeyID).Str("integration_id", who.IntegrationID).Str("webhook_id", wh.ID).
		Str("event", wh.Event).Msg("webhook added through the Admin API")
	writeJSON(w, http.StatusCreated, map[string][]ghostWebhook{"webhooks": {toGhost(wh)}})
}

func (d Deps) adminEdit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	data, e := readGhostBody(w, r)
	if e != nil {
		writeAPIError(w, actionNone, e)
		return
	}
	if e := validateEditBody(id, data); e != nil {
		writeAPIError(w, actionEdit, e)
		return
	}
	if !d.ownWebhook(w, r, actionEdit, "edit", id) {
		return
	}
	in, e := webhookFields(data, true)
	if e != nil {
		writeAPIError(w, actionEdit, e)
		return
	}
	wh, err := webhook.Store{Pool: d.Pool}.Edit(r.Context(), id, in)
	if err != nil {
		d.storeError(w, r, actionEdit, err)
		return
	}
	who := caller(r.Context())
	d.Log.Info().Str("key_id", who.KeyID).Str("integration_id", who.IntegrationID).Str("webhook_id", wh.ID).
		Str("event", wh.Event).Str("status", wh.Status).Msg("webhook edited through the Admin API")
	writeJSON(w, http.StatusOK, map[string][]ghostWebhook{"webhooks": {toGhost(wh)}})
}

func (d Deps) adminDelete(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	// Ghost's body parser reads a DELETE's JSON body too, and refuses one that does
	// not parse.
	if _, e := readGhostBody(w, r); e != nil {
		writeAPIError(w, actionNone, e)
		return
	}
	if e := checkGhostID(id); e != nil {
		writeAPIError(w, actionDelete, e)
		return
	}
	if !d.ownWebhook(w, r, actionDelete, "destroy", id) {
		return
	}
	if err := (webhook.Store{Pool: d.Pool}).Remove(r.Context(), id); err != nil {
		d.storeError(w, r, actionDelete, err)
		return
	}
	who := caller(r.Context())
	d.Log.Info().Str("key_id", who.KeyID).Str("integration_id", who.IntegrationID).Str("webhook_id", id).
		Msg("webhook deleted through the Admin API")
	w.WriteHeader(http.StatusNoContent)
}
