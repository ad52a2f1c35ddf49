package console

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/relayhq/relay/relay/internal/audit"
	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/internal/webhook"
)

var (
	hookIDPattern  = regexp.MustCompile(`^[0-9a-f]{24}$`)
	patternPattern = regexp.MustCompile(`^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$`)
	sourcePattern  = regexp.MustCompile(`^(emit|stripe|ghost(:[0-9a-f]{24})?)$`)
)

// parseTime reads a time filter: what the CLI and the audit API take (RFC 3339, a date,
// a duration ago such as 24h or 7d), or a browser's datetime-local (read as UTC).
func parseTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse("2006-01-02T15:04", s); err == nil {
		return t, nil
	}
	return audit.ParseTime(s, now)
}

// timeFilters reads since and until into their fields, errors next to them.
func timeFilters(q url.Values, errs map[string]string) (since, until time.Time) {
	now := time.Now()
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"since", &since}, {"until", &until}} {
		if v := strings.TrimSpace(q.Get(p.name)); v != "" {
			t, err := parseTime(v, now)
			if err != nil {
				errs[p.name] = "Not a time: use 24h or 7d (ago), a date (2024-05-01) or a time (2024-05-01T12:00Z)."
				continue
			}
			*p.dst = t
		}
	}
	if !since.IsZero() && !until.IsZero() && !since.Before(until) {
		errs["until"] = "Until must be after since."
	}
	return since, until
}

// absolute writes a time filter for the next page's link as the instant it was on this
// page: "24h" typed on the first page must not move while the operator pages back.
func absolute(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

type hookOption struct{ ID, Label string }

func hookOptions(ctx context.Context, q store.Querier) ([]hookOption, error) {
	rows, err := q.Query(ctx, `SELECT id, coalesce(nullif(name, ''), event) || ' — ' || event FROM relay.webhooks ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hookOption, error) {
		var o hookOption
		return o, r.Scan(&o.ID, &o.Label)
	})
	if err != nil {
		return nil, fmt.Errorf("list webhooks: %w", err)
	}
	return out, nil
}

type deliveriesData struct {
	Webhook, Event, Status, Since, Until string
	Hooks                                []hookOption
	Statuses                             []store.Status
	Rows                                 []deliveryRow
	Next                                 string
	SearchedTo                           *time.Time
	Errors                               map[string]string
	Filtered, Paged                      bool
}

// deliveries lists deliveries newest first, filtered, a page at a time.
func (c *console) deliveries(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	d := deliveriesData{Webhook: q.Get("webhook"), Event: strings.TrimSpace(q.Get("event")), Status: q.Get("status"),
		Since: q.Get("since"), Until: q.Get("until"), Statuses: store.Statuses, Errors: map[string]string{}}
	f := deliveryFilter{Webhook: d.Webhook, Event: d.Event, Status: d.Status}
	if f.Webhook != "" && !hookIDPattern.MatchString(f.Webhook) {
		d.Errors["webhook"] = "No such webhook."
	}
	if f.Event != "" && (len(f.Event) > 50 || !patternPattern.MatchString(f.Event)) {
		d.Errors["event"] = "An event name (post.published), a trailing wildcard (post.*) or *."
	}
	if _, ok := store.ParseStatus(f.Status); f.Status != "" && !ok {
		d.Errors["status"] = "Choose a status from the list."
	}
	f.Since, f.Until = timeFilters(q, d.Errors)
	if v := q.Get("cursor"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			d.Errors["form"] = errBadCursor.Error()
		}
		f.Cursor, d.Paged = n, true
	}
	d.Filtered = d.Webhook != "" || d.Event != "" || d.Status != "" || d.Since != "" || d.Until != ""
	status := http.StatusOK
	err := readTx(r.Context(), c.Pool, func(tx pgx.Tx) error {
		var err error
		if d.Hooks, err = hookOptions(r.Context(), tx); err != nil {
			return err
		}
		if len(d.Errors) > 0 {
			status = http.StatusBadRequest
			return nil
		}
		var next int64
		if d.Rows, next, d.SearchedTo, err = listDeliveries(r.Context(), tx, f); err != nil {
			return err
		}
		if next > 0 {
			d.Next = query("/ui/deliveries", "webhook", d.Webhook, "event", d.Event, "status", d.Status,
				"since", absolute(f.Since), "until", absolute(f.Until), "cursor", strconv.FormatInt(next, 10))
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.render(w, r, s, status, "deliveries", "Deliveries", "deliveries", d)
	return nil
}

// deliveryDetail is one delivery with its event and webhook.
type deliveryDetail struct {
	ID             int64
	EventID        string
	Event          string
	Source         string
	EventAt        *time.Time
	WebhookID      string
	WebhookLabel   *string
	WebhookURL     *string
	WebhookStatus  *string
	Status         string
	Attempts       int
	NextAttemptAt  *time.Time
	LastStatusCode *int
	LastError      *string
	CreatedAt      time.Time
	DeliveredAt    *time.Time
	InFlight       bool
	// OrderingKey is the key of a delivery of an ordered webhook; Ordered says whether
	// its webhook is ordered now.
	OrderingKey *string
	Ordered     bool
	// Blocker is, for a held delivery, the delivery of its key that is under way or
	// failed (nil when the one before it has just finished and the relay is letting it
	// go).
	Blocker *blocker
	// HeldBehind counts, for a failed delivery of an ordered key, the deliveries of its
	// key it holds back (at most heldCountLimit).
	HeldBehind int64
	body       *string
}

// blocker is the delivery a held one waits for.
type blocker struct {
	ID     int64
	Status string
}

// Held reports a delivery waiting for an earlier one of its ordered key.
func (d deliveryDetail) Held() bool { return isHeld(d.Status, d.NextAttemptAt) }

// CanSkip reports a failed delivery that holds back an ordered key: what Skip is for.
// (store.Skip decides what may be skipped; the page offers it where it lets a key go.)
func (d deliveryDetail) CanSkip() bool {
	return d.Status == string(store.Failed) && d.OrderingKey != nil && d.Ordered
}

// heldCountLimit bounds how many held deliveries a delivery page counts.
const heldCountLimit = 1000

// Stripe reports an event the Stripe endpoint created: its redelivery from the console
// goes without Stripe-Signature.
func (d deliveryDetail) Stripe() bool { return d.Source == "stripe" }

type attemptRow struct {
	Attempt         int
	StartedAt       time.Time
	DurationMS      int
	StatusCode      *int
	Error           *string
	ResponseExcerpt *string
	RelayInstance   *string
	FinalURL        *string // masked
}

// bodyView is an event body: pretty-printed to read, and its exact bytes to copy (in
// base64, which the page's script decodes: HTML would normalise line endings in text)
// or to download.
type bodyView struct {
	EventID   string
	Pretty    string
	Exact     string
	Size      int
	CopyBytes bool
}

// maxCopyBytes is the largest body whose exact bytes are put into the page for the copy
// button; a larger one (up to the 1 MiB an event may have) is downloaded instead.
const maxCopyBytes = 256 << 10

func newBody(eventID string, raw string) bodyView {
	b := bodyView{EventID: eventID, Size: len(raw), Pretty: raw}
	var buf bytes.Buffer
	if json.Indent(&buf, []byte(raw), "", "  ") == nil {
		b.Pretty = buf.String()
	}
	if len(raw) <= maxCopyBytes {
		b.Exact, b.CopyBytes = base64.StdEncoding.EncodeToString([]byte(raw)), true
	}
	return b
}

type deliveryData struct {
	D        deliveryDetail
	Attempts []attemptRow
	Body     bodyView
	Done     string
	Error    string
}

func (c *console) readDelivery(ctx context.Context, id int64) (deliveryData, error) {
	var d deliveryData
	err := readTx(ctx, c.Pool, func(tx pgx.Tx) error {
		x := &d.D
		err := tx.QueryRow(ctx, `SELECT d.id, d.event_id::text, coalesce(o.metadata ->> 'event', ''), coalesce(o.source, ''), o.created_at,
			d.webhook_id, coalesce(nullif(w.name, ''), w.event), w.target_url, w.status, d.status, d.attempts, d.next_attempt_at,
			d.last_status_code, d.last_error, d.created_at, d.delivered_at,
			d.status = 'pending' AND d.lease_token IS NOT NULL AND d.lease_expires_at > now(), o.payload::text,
			d.ordering_key, coalesce(w.ordered, false)
			FROM relay.deliveries d
			LEFT JOIN relay.outbox o ON o."uuid"::uuid = d.event_id
			LEFT JOIN relay.webhooks w ON w.id = d.webhook_id
			WHERE d.id = $1`, id).Scan(&x.ID, &x.EventID, &x.Event, &x.Source, &x.EventAt, &x.WebhookID, &x.WebhookLabel,
			&x.WebhookURL, &x.WebhookStatus, &x.Status, &x.Attempts, &x.NextAttemptAt, &x.LastStatusCode, &x.LastError,
			&x.CreatedAt, &x.DeliveredAt, &x.InFlight, &x.body, &x.OrderingKey, &x.Ordered)
		if err != nil {
			return err
		}
		if err := readKeyState(ctx, tx, x); err != nil {
			return err
		}
		if x.WebhookURL != nil {
			m := webhook.MaskURL(*x.WebhookURL)
			x.WebhookURL = &m
		}
		if x.body != nil {
			d.Body = newBody(x.EventID, *x.body)
		}
		rows, err := tx.Query(ctx, `SELECT attempt, started_at, duration_ms, status_code, error, response_excerpt, relay_instance, final_url
			FROM relay.delivery_attempts WHERE delivery_id = $1 ORDER BY attempt DESC LIMIT 500`, id)
		if err != nil {
			return err
		}
		d.Attempts, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (attemptRow, error) {
			var a attemptRow
			err := r.Scan(&a.Attempt, &a.StartedAt, &a.DurationMS, &a.StatusCode, &a.Error, &a.ResponseExcerpt, &a.RelayInstance, &a.FinalURL)
			if a.FinalURL != nil {
				m := webhook.MaskURL(*a.FinalURL)
				a.FinalURL = &m
			}
			return a, err
		})
		return err
	})
	return d, err
}

// readKeyState fills in what a delivery of an ordered key waits for, or holds back,
// through the key indexes of 00011_ordering.
func readKeyState(ctx context.Context, q store.Querier, x *deliveryDetail) error {
	if x.OrderingKey == nil {
		return nil
	}
	switch {
	case x.Held():
		// What is under way of the key, or failed: what releaseNextSQL waits for.
		var b blocker
		err := q.QueryRow(ctx, `SELECT id, status FROM relay.deliveries
			WHERE webhook_id = $1 AND ordering_key = $2 AND id <> $3
			  AND (status = 'failed' OR (status = 'pending' AND next_attempt_at IS NOT NULL))
			ORDER BY event_tx, event_offset LIMIT 1`, x.WebhookID, *x.OrderingKey, x.ID).Scan(&b.ID, &b.Status)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read what delivery %d waits for: %w", x.ID, err)
		}
		x.Blocker = &b
	case x.Status == string(store.Failed):
		err := q.QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM relay.deliveries
			WHERE webhook_id = $1 AND ordering_key = $2 AND status = 'pending' AND next_attempt_at IS NULL
			LIMIT $3) h`, x.WebhookID, *x.OrderingKey, heldCountLimit).Scan(&x.HeldBehind)
		if err != nil {
			return fmt.Errorf("count what delivery %d holds back: %w", x.ID, err)
		}
	}
	return nil
}

func deliveryIDOf(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return 0, errNotFound
	}
	return id, nil
}

// deliveryPage is one delivery: its event's body, every attempt, the next one, and
// Redeliver.
func (c *console) deliveryPage(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := deliveryIDOf(r)
	if err != nil {
		return err
	}
	d, err := c.readDelivery(r.Context(), id)
	if err != nil {
		return err
	}
	d.Done = done[r.URL.Query().Get("done")]
	c.render(w, r, s, http.StatusOK, "delivery", fmt.Sprintf("Delivery %d", id), "deliveries", d)
	return nil
}

// redeliver puts the delivery back in the queue, due now (store.Redeliver). From the
// console a Stripe event never goes with Stripe-Signature: re-sending a payment event
// to Ghost, which does not deduplicate, takes `relay redeliver --stripe-signature`.
func (c *console) redeliver(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := deliveryIDOf(r)
	if err != nil {
		return err
	}
	held := false
	err = pgx.BeginFunc(r.Context(), c.Pool, func(tx pgx.Tx) error {
		var webhookID, eventID, st string
		var attempts int
		if err := tx.QueryRow(r.Context(), `SELECT webhook_id, event_id::text, status, attempts FROM relay.deliveries WHERE id = $1`, id).
			Scan(&webhookID, &eventID, &st, &attempts); err != nil {
			return err
		}
		if _, err := store.Redeliver(r.Context(), tx, store.Selection{DeliveryID: id, StripeSignature: false}); err != nil {
			return err
		}
		// A delivery of an ordered key waits its turn when another of its key is under way.
		var now string
		var next *time.Time
		if err := tx.QueryRow(r.Context(), `SELECT status, next_attempt_at FROM relay.deliveries WHERE id = $1`, id).Scan(&now, &next); err != nil {
			return err
		}
		held = isHeld(now, next)
		return recordChange(r.Context(), tx, s, "redelivered a delivery", target{WebhookID: webhookID, DeliveryID: id, EventID: eventID},
			fmt.Sprintf("delivery %d (%s after %d %s)", id, st, attempts, plural(int64(attempts), "attempt", "attempts")))
	})
	var problem string
	switch {
	case errors.Is(err, store.ErrInFlight):
		problem = "An attempt of this delivery is under way. Wait for it to finish, then redeliver if you still need to."
	case errors.Is(err, store.ErrWebhookInactive):
		problem = "The webhook is disabled or deleted, so the relay does not deliver to it. Enable it first."
	case errors.Is(err, store.ErrNotFound):
		return errNotFound
	case err != nil:
		return err
	}
	if problem != "" {
		d, err := c.readDelivery(r.Context(), id)
		if err != nil {
			return err
		}
		d.Error = problem
		c.render(w, r, s, http.StatusConflict, "delivery", fmt.Sprintf("Delivery %d", id), "deliveries", d)
		return nil
	}
	c.Log.Info().Str("key_id", s.KeyID).Int64("delivery_id", id).Msg("delivery redelivered in the console")
	flash := "redelivered"
	if held {
		flash = "redelivered-held"
	}
	http.Redirect(w, r, fmt.Sprintf("/ui/deliveries/%d?done=%s", id, flash), http.StatusSeeOther)
	return nil
}

// skipPage asks before skipping, saying what it does.
func (c *console) skipPage(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := deliveryIDOf(r)
	if err != nil {
		return err
	}
	d, err := c.readDelivery(r.Context(), id)
	if err != nil {
		return err
	}
	if d.D.Status != string(store.Failed) {
		// Redelivered or skipped meanwhile: its page says what it is now.
		http.Redirect(w, r, fmt.Sprintf("/ui/deliveries/%d", id), http.StatusSeeOther)
		return nil
	}
	c.render(w, r, s, http.StatusOK, "skip", fmt.Sprintf("Skip delivery %d", id), "deliveries", d)
	return nil
}

// skip passes over a failed delivery so that the next delivery of its ordered key goes
// (store.Skip, as `relay deliveries skip` and the audit API do), recorded in the
// transaction that skips it.
func (c *console) skip(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := deliveryIDOf(r)
	if err != nil {
		return err
	}
	released, err := store.SkipRecorded(r.Context(), c.Pool, id, func(tx pgx.Tx) error {
		var webhookID, eventID string
		var key *string
		var attempts int
		if err := tx.QueryRow(r.Context(), `SELECT webhook_id, event_id::text, ordering_key, attempts FROM relay.deliveries WHERE id = $1`, id).
			Scan(&webhookID, &eventID, &key, &attempts); err != nil {
			return err
		}
		detail := fmt.Sprintf("delivery %d (failed after %d %s)", id, attempts, plural(int64(attempts), "attempt", "attempts"))
		if key != nil {
			detail += fmt.Sprintf(" of key %s, so that the next delivery of its key goes", clip(*key, 64))
		}
		return recordChange(r.Context(), tx, s, "skipped a delivery", target{WebhookID: webhookID, DeliveryID: id, EventID: eventID}, detail)
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNotFound
	case errors.Is(err, store.ErrNotFailed):
		d, err := c.readDelivery(r.Context(), id)
		if err != nil {
			return err
		}
		d.Error = "Only a failed delivery can be skipped: this one is " + d.D.Status + ". Nothing was changed."
		c.render(w, r, s, http.StatusConflict, "delivery", fmt.Sprintf("Delivery %d", id), "deliveries", d)
		return nil
	case err != nil:
		return err
	}
	c.Log.Info().Str("key_id", s.KeyID).Int64("delivery_id", id).Int64("released", released).Msg("delivery skipped in the console")
	flash := "skipped"
	if released == 0 {
		flash = "skipped-0"
	}
	http.Redirect(w, r, fmt.Sprintf("/ui/deliveries/%d?done=%s", id, flash), http.StatusSeeOther)
	return nil
}

type eventsData struct {
	ID, Event, Source, Since, Until string
	Rows                            []eventRow
	Next                            string
	SearchedTo                      *time.Time
	Errors                          map[string]string
	Filtered, Paged                 bool
}

// events searches events: by id (the webhook-id a receiver reports: straight to its
// page), name, source and time.
func (c *console) events(w http.ResponseWriter, r *http.Request, s *session) error {
	q := r.URL.Query()
	d := eventsData{ID: strings.TrimSpace(q.Get("id")), Event: strings.TrimSpace(q.Get("event")), Source: strings.TrimSpace(q.Get("source")),
		Since: q.Get("since"), Until: q.Get("until"), Errors: map[string]string{}}
	if d.ID != "" {
		u, err := uuid.Parse(d.ID)
		if err == nil {
			http.Redirect(w, r, "/ui/events/"+u.String(), http.StatusSeeOther)
			return nil
		}
		d.Errors["id"] = "An event id is a UUID, as in the webhook-id header (0190b7c2-…)."
	}
	f := eventFilter{Event: d.Event, Source: d.Source, Cursor: q.Get("cursor")}
	if f.Event != "" && (len(f.Event) > 50 || !patternPattern.MatchString(f.Event)) {
		d.Errors["event"] = "An event name (post.published), a trailing wildcard (post.*) or *."
	}
	if f.Source != "" && !sourcePattern.MatchString(f.Source) {
		d.Errors["source"] = "emit, stripe, ghost (every Ghost site) or ghost:<site id>."
	}
	f.Since, f.Until = timeFilters(q, d.Errors)
	d.Paged = f.Cursor != ""
	d.Filtered = d.Event != "" || d.Source != "" || d.Since != "" || d.Until != ""
	status := http.StatusOK
	if len(d.Errors) > 0 {
		status = http.StatusBadRequest
	} else {
		err := readTx(r.Context(), c.Pool, func(tx pgx.Tx) error {
			var err error
			var next string
			d.Rows, next, d.SearchedTo, err = listEvents(r.Context(), tx, f)
			if next != "" {
				d.Next = query("/ui/events", "event", d.Event, "source", d.Source, "since", absolute(f.Since), "until", absolute(f.Until), "cursor", next)
			}
			return err
		})
		if errors.Is(err, errBadCursor) {
			d.Errors["form"], status = err.Error(), http.StatusBadRequest
		} else if err != nil {
			return err
		}
	}
	c.render(w, r, s, status, "events", "Events", "events", d)
	return nil
}

type eventDetail struct {
	ID             string
	Event          string
	Source         string
	ContentVersion *string
	CreatedAt      time.Time
	Unread         bool
	StripeID       *string
	GhostSiteURL   *string
}

// eventHookRow answers "did it reach this webhook?": its delivery, or why there is none.
type eventHookRow struct {
	WebhookID     string
	Label         *string
	URL           *string
	WebhookStatus *string
	Delivery      *deliveryRow
	Reason        string
}

type eventData struct {
	E           eventDetail
	Body        bodyView
	Rows        []eventHookRow
	Reached     int
	NoneMatched bool
}

func eventIDOf(r *http.Request) (string, error) {
	u, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		return "", errNotFound
	}
	return u.String(), nil
}

// eventPage is one event and whether it reached everyone: one row per webhook it went
// to, and per webhook that matches it now but got no delivery, with the reason.
func (c *console) eventPage(w http.ResponseWriter, r *http.Request, s *session) error {
	id, err := eventIDOf(r)
	if err != nil {
		return err
	}
	var d eventData
	err = readTx(r.Context(), c.Pool, func(tx pgx.Tx) error {
		ctx := r.Context()
		e := &d.E
		var body string
		err := tx.QueryRow(ctx, `SELECT o."uuid", coalesce(o.metadata ->> 'event', ''), o.source, o.metadata ->> 'content_version',
			o.created_at, o.payload::text,
			g.tx IS NULL OR (o.transaction_id, o."offset") > (g.tx, g.off),
			(SELECT s.id FROM relay.stripe_events s WHERE s.event_id = o."uuid"::uuid),
			(SELECT gs.url FROM relay.ghost_sites gs WHERE 'ghost:' || gs.id = o.source)
			FROM relay.outbox o
			LEFT JOIN LATERAL (SELECT last_processed_transaction_id AS tx, coalesce(offset_acked, 0) AS off
			                     FROM relay.outbox_offsets WHERE consumer_group = $2) g ON true
			WHERE o."uuid"::uuid = $1::uuid`, id, store.ConsumerGroup).Scan(&e.ID, &e.Event, &e.Source, &e.ContentVersion,
			&e.CreatedAt, &body, &e.Unread, &e.StripeID, &e.GhostSiteURL)
		if err != nil {
			return err
		}
		d.Body = newBody(e.ID, body)
		rows, err := tx.Query(ctx, `SELECT d.id, d.event_id::text, d.webhook_id, coalesce(nullif(w.name, ''), w.event), w.target_url, w.status,
			d.status, d.attempts, d.last_status_code, d.next_attempt_at, d.created_at, d.ordering_key
			FROM relay.deliveries d LEFT JOIN relay.webhooks w ON w.id = d.webhook_id
			WHERE d.event_id = $1::uuid ORDER BY d.id`, id)
		if err != nil {
			return err
		}
		d.Rows, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (eventHookRow, error) {
			var x eventHookRow
			dl := &deliveryRow{Event: e.Event, Source: e.Source}
			err := r.Scan(&dl.ID, &dl.EventID, &x.WebhookID, &x.Label, &x.URL, &x.WebhookStatus, &dl.Status, &dl.Attempts,
				&dl.LastStatusCode, &dl.NextAttemptAt, &dl.CreatedAt, &dl.OrderingKey)
			if x.URL != nil {
				m := webhook.MaskURL(*x.URL)
				x.URL = &m
			}
			dl.WebhookID, x.Delivery = x.WebhookID, dl
			return x, err
		})
		if err != nil {
			return err
		}
		for _, x := range d.Rows {
			if x.Delivery.Status == string(store.Succeeded) {
				d.Reached++
			}
		}
		// Webhooks that match the event now but got no delivery of it.
		rows, err = tx.Query(ctx, `SELECT w.id, coalesce(nullif(w.name, ''), w.event), w.target_url, w.status, w.created_at > $3
			FROM relay.webhooks w
			WHERE relay.event_matches(w.event, $2)
			  AND NOT EXISTS (SELECT 1 FROM relay.deliveries d WHERE d.event_id = $1::uuid AND d.webhook_id = w.id)
			ORDER BY w.created_at, w.id`, id, e.Event, e.CreatedAt)
		if err != nil {
			return err
		}
		missing, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (eventHookRow, error) {
			var x eventHookRow
			var later bool
			err := r.Scan(&x.WebhookID, &x.Label, &x.URL, &x.WebhookStatus, &later)
			if x.URL != nil {
				m := webhook.MaskURL(*x.URL)
				x.URL = &m
			}
			switch {
			case e.Unread:
				x.Reason = "Not fanned out yet: the event is still in the outbox backlog."
			case later:
				x.Reason = "Added after this event was emitted: a webhook gets the events emitted while it exists."
			case deref(x.WebhookStatus) != "active":
				x.Reason = "Disabled now; it was disabled, or did not match, when the event was fanned out."
			default:
				x.Reason = "It was disabled, or its event pattern did not match, when the event was fanned out."
			}
			return x, err
		})
		if err != nil {
			return err
		}
		d.Rows = append(d.Rows, missing...)
		d.NoneMatched = len(d.Rows) == 0 && !e.Unread
		return nil
	})
	if err != nil {
		return err
	}
	c.render(w, r, s, http.StatusOK, "event", d.E.Event+" event", "events", d)
	return nil
}

// eventBody answers the event's exact bytes as a download: text/plain and sandboxed,
// so a browser never runs or renders what a body holds.
func (c *console) eventBody(w http.ResponseWriter, r *http.Request, _ *session) error {
	id, err := eventIDOf(r)
	if err != nil {
		return err
	}
	var body string
	if err := c.Pool.QueryRow(r.Context(), `SELECT payload::text FROM relay.outbox WHERE "uuid"::uuid = $1::uuid`, id).Scan(&body); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="event-`+id+`.json"`)
	w.Header().Set("Content-Security-Policy", "sandbox; default-src 'none'; frame-ancestors 'none'")
	_, _ = w.Write([]byte(body))
	return nil
}
