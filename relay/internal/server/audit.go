package server

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/relayhq/relay/relay/internal/audit"
	"github.com/relayhq/relay/relay/internal/invalid"
	"github.com/relayhq/relay/relay/internal/store"
)

// The audit API (README: "Auditing"), with the Admin API's key auth and error shape:
//
//	GET  /relay/v1/events                      ?event=&webhook=&status=&since=&until=&limit=&cursor=
//	GET  /relay/v1/events/{id}                 the event, its deliveries and their attempts
//	GET  /relay/v1/deliveries                  ?event=&event_id=&webhook=&status=&since=&until=&limit=&cursor=
//	GET  /relay/v1/deliveries/{id}             one delivery and its attempts
//	POST /relay/v1/deliveries/{id}/redeliver   -> 202, the delivery, pending again
//	POST /relay/v1/deliveries/{id}/skip        -> 200, the delivery, skipped
//	POST /relay/v1/events/{id}/redeliver       -> 202, what was redelivered and skipped
//
// Reads cover everything; the actions (redeliver, skip) touch only deliveries of the
// key's own integration's webhooks, as the Admin API edits only those: one that is not
// the caller's is answered as not found.
//
// Lists are newest first; meta.next_cursor, when not null, fetches the next page.
// since/until take RFC 3339, a date, or a duration ago (24h, 7d).

func registerAudit(mux *http.ServeMux, d Deps) {
	for _, slash := range []string{"", "/{$}"} {
		mux.HandleFunc("GET /relay/v1/events"+slash, d.requireKey(d.auditEvents))
		mux.HandleFunc("GET /relay/v1/events/{id}"+slash, d.requireKey(d.auditEvent))
		mux.HandleFunc("POST /relay/v1/events/{id}/redeliver"+slash, d.requireKey(d.auditRedeliverEvent))
		mux.HandleFunc("GET /relay/v1/deliveries"+slash, d.requireKey(d.auditDeliveries))
		mux.HandleFunc("GET /relay/v1/deliveries/{id}"+slash, d.requireKey(d.auditDelivery))
		mux.HandleFunc("POST /relay/v1/deliveries/{id}/redeliver"+slash, d.requireKey(d.auditRedeliver))
		mux.HandleFunc("POST /relay/v1/deliveries/{id}/skip"+slash, d.requireKey(d.auditSkip))
	}
}

func (d Deps) auditStore() audit.Store { return audit.Store{Pool: d.Pool} }

// auditError maps the audit package's errors to Ghost-shaped responses.
func (d Deps) auditError(w http.ResponseWriter, r *http.Request, err error) {
	var inv *invalid.Error
	switch {
	case errors.As(err, &inv):
		writeAPIError(w, actionNone, &apiError{Type: "ValidationError", Message: inv.Message, Property: inv.Field})
	case errors.Is(err, audit.ErrNotFound):
		writeAPIError(w, actionNone, &apiError{Type: "NotFoundError", Message: "Resource not found."})
	case errors.Is(err, store.ErrInFlight), errors.Is(err, store.ErrWebhookInactive), errors.Is(err, store.ErrNotFailed):
		writeAPIError(w, actionNone, &apiError{Type: "ConflictError", Message: err.Error()})
	default:
		internalError(d, w, r, actionNone, err)
	}
}

// parseFilter reads the list filters from the query string. Unknown parameters are
// refused: a misspelt filter silently ignored would return everything.
func parseFilter(q url.Values, allowed ...string) (audit.Filter, error) {
	var f audit.Filter
	ok := map[string]bool{"since": true, "until": true, "limit": true, "cursor": true}
	for _, a := range allowed {
		ok[a] = true
	}
	for k := range q {
		if !ok[k] {
			return f, &invalid.Error{Field: k, Message: "unknown query parameter " + strconv.Quote(clip(k, 40))}
		}
	}
	f.Event, f.EventID, f.Webhook, f.Status, f.Cursor, f.Source = q.Get("event"), q.Get("event_id"), q.Get("webhook"), q.Get("status"), q.Get("cursor"), q.Get("source")
	var err error
	if f.Since, f.Until, err = parseSinceUntil(q.Get("since"), q.Get("until"), time.Now()); err != nil {
		return f, err
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return f, &invalid.Error{Field: "limit", Message: "limit must be a positive number"}
		}
		f.Limit = n
	}
	return f, nil
}

// parseSinceUntil reads the since and until of a list filter or a replay (RFC 3339, a
// date, or a duration ago); an empty one stays zero. An error names its field.
func parseSinceUntil(since, until string, now time.Time) (time.Time, time.Time, error) {
	var out [2]time.Time
	for i, p := range [2]struct{ name, value string }{{"since", since}, {"until", until}} {
		if p.value == "" {
			continue
		}
		t, err := audit.ParseTime(p.value, now)
		if err != nil {
			return time.Time{}, time.Time{}, &invalid.Error{Field: p.name, Message: p.name + ": " + err.Error()}
		}
		out[i] = t
	}
	return out[0], out[1], nil
}

type pageMeta struct {
	NextCursor *string `json:"next_cursor"`
}

func meta(next string) pageMeta {
	m := pageMeta{}
	if next != "" {
		m.NextCursor = &next
	}
	return m
}

func (d Deps) auditEvents(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query(), "event", "webhook", "status", "source")
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	events, next, err := d.auditStore().ListEvents(r.Context(), f)
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	if events == nil {
		events = []audit.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": events, "meta": meta(next)})
}

func (d Deps) auditEvent(w http.ResponseWriter, r *http.Request) {
	e, err := d.auditStore().GetEvent(r.Context(), r.PathValue("id"))
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"event": e})
}

func (d Deps) auditDeliveries(w http.ResponseWriter, r *http.Request) {
	f, err := parseFilter(r.URL.Query(), "event", "event_id", "webhook", "status", "source")
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	ds, next, err := d.auditStore().ListDeliveries(r.Context(), f)
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	if ds == nil {
		ds = []audit.Delivery{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"deliveries": ds, "meta": meta(next)})
}

func deliveryID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, audit.ErrNotFound
	}
	return id, nil
}

func (d Deps) auditDelivery(w http.ResponseWriter, r *http.Request) {
	id, err := deliveryID(r)
	if err == nil {
		var del audit.Delivery
		if del, err = d.auditStore().GetDelivery(r.Context(), id); err == nil {
			writeJSON(w, http.StatusOK, map[string]any{"delivery": del})
			return
		}
	}
	d.auditError(w, r, err)
}

func (d Deps) auditRedeliver(w http.ResponseWriter, r *http.Request) {
	id, err := deliveryID(r)
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	if _, err := store.Redeliver(r.Context(), d.Pool, store.Selection{DeliveryID: id, IntegrationID: caller(r.Context()).IntegrationID}); err != nil {
		d.auditError(w, r, err)
		return
	}
	d.Log.Info().Str("key_id", keyID(r.Context())).Int64("delivery_id", id).Msg("delivery redelivered through the audit API")
	del, err := d.auditStore().GetDelivery(r.Context(), id)
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"delivery": del})
}

// auditSkip passes over a failed delivery, so that the later deliveries of its ordered
// key go.
func (d Deps) auditSkip(w http.ResponseWriter, r *http.Request) {
	id, err := deliveryID(r)
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	// Only a delivery of the caller's own webhooks; another's is answered as missing.
	if del, err := d.auditStore().GetDelivery(r.Context(), id); err != nil || !d.owns(r, del.WebhookID) {
		if err == nil {
			err = audit.ErrNotFound
		}
		d.auditError(w, r, err)
		return
	}
	released, err := store.Skip(r.Context(), d.Pool, id)
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	d.Log.Info().Str("key_id", keyID(r.Context())).Int64("delivery_id", id).Int64("released", released).
		Msg("delivery skipped through the audit API")
	del, err := d.auditStore().GetDelivery(r.Context(), id)
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"delivery": del, "released": released})
}

func (d Deps) auditRedeliverEvent(w http.ResponseWriter, r *http.Request) {
	res, err := store.Redeliver(r.Context(), d.Pool, store.Selection{EventID: r.PathValue("id"), IntegrationID: caller(r.Context()).IntegrationID})
	if err != nil {
		d.auditError(w, r, err)
		return
	}
	d.Log.Info().Str("key_id", keyID(r.Context())).Str("event_id", r.PathValue("id")).
		Int("redelivered", len(res.Redelivered)).Int("skipped", len(res.InFlight)+len(res.WebhookInactive)).
		Msg("event redelivered through the audit API")
	writeJSON(w, http.StatusAccepted, res)
}
