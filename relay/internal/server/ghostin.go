package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/relayhq/relay/relay/internal/ghostsite"
	"github.com/relayhq/relay/relay/internal/metrics"
)

// The inbound endpoint of connected Ghost sites (`relay ghost connect`):
//
//	POST /ghost/in/{site}/{event}   X-Ghost-Signature, body as Ghost sent it
//
// 200 {"received":true,"event_id":…} only after the event is committed. Refusals: 401 bad
// or missing signature, 404 unknown site, 400 unknown event, a body that is not JSON or
// whose "event" is not the path's, 413 over 1 MiB (nothing stored), 503 database
// unavailable. Ghost never retries, so each refusal is a warn line and a counter.

// ghostInTimeout bounds the work of one request: Ghost itself gives up after 2 s, and an
// answer nobody waits for is no use.
const ghostInTimeout = 5 * time.Second

type ghostInbound struct {
	sites   *ghostsite.Store
	metrics *metrics.Metrics
	d       Deps
	now     func() time.Time
}

func registerGhostInbound(mux *http.ServeMux, d Deps) {
	sites := d.GhostSites
	if sites == nil {
		sites = &ghostsite.Store{Pool: d.Pool}
	}
	h := &ghostInbound{sites: sites, metrics: d.Metrics, d: d, now: time.Now}
	mux.Handle("POST /ghost/in/{site}/{event}", h)
}

type ghostInReply struct {
	Received bool   `json:"received"`
	EventID  string `json:"event_id,omitempty"`
	Error    string `json:"error,omitempty"`
}

func (h *ghostInbound) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	site, event := r.PathValue("site"), r.PathValue("event")
	log := h.d.Log.With().Str("component", "ghost_inbound").Str("site_id", site).Str("event", event).
		Str("remote", r.RemoteAddr).Logger()
	refuse := func(ref *ghostsite.Refused) {
		// The reason and the error, never the signature or the body.
		log.Warn().Err(ref.Err).Int("status", ref.Status).Str("reason", ref.Reason).
			Msg("Ghost webhook refused: " + ref.Msg + " (Ghost will not resend it)")
		h.metrics.GhostInbound(ref.Reason)
		writeJSON(w, ref.Status, ghostInReply{Error: ref.Msg})
	}
	body, err := readBody(w, r, ghostsite.MaxBody)
	if errors.Is(err, errTooLarge) {
		refuse(&ghostsite.Refused{Status: http.StatusRequestEntityTooLarge, Reason: ghostsite.ReasonTooLarge,
			Msg: fmt.Sprintf("body larger than %d bytes", ghostsite.MaxBody)})
		return
	}
	if err != nil {
		refuse(&ghostsite.Refused{Status: http.StatusBadRequest, Reason: ghostsite.ReasonBadBody, Msg: "could not read the body", Err: err})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), ghostInTimeout)
	defer cancel()
	id, err := h.sites.Receive(ctx, site, event, body, r.Header.Get("X-Ghost-Signature"), r.Header.Get("Content-Version"), h.now())
	if err != nil {
		var ref *ghostsite.Refused
		if !errors.As(err, &ref) {
			ref = &ghostsite.Refused{Status: http.StatusServiceUnavailable, Reason: ghostsite.ReasonUnavailable, Msg: "could not store the event", Err: err}
		}
		refuse(ref)
		return
	}
	h.metrics.GhostInbound(metrics.GhostAccepted)
	log.Debug().Str("event_id", id).Msg("Ghost webhook stored")
	writeJSON(w, http.StatusOK, ghostInReply{Received: true, EventID: id})
}
