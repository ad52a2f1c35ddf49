// Package audit answers what happened to events: the event log, each event's
// deliveries and their attempts. The CLI (relay events, relay deliveries) and the audit
// API (/relay/v1/...) both use it, so they filter and page identically. It only reads;
// redelivery, which puts deliveries back in the queue, is store.Redeliver.
package audit

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/relay/internal/invalid"
	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/internal/webhook"
)

// Limits of one page.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Event is one committed event.
type Event struct {
	ID        string    `json:"id"`
	Event     string    `json:"event"`
	CreatedAt time.Time `json:"created_at"`
	// Source is who created the event: "emit", "stripe" or "ghost:<site id>".
	Source string          `json:"source"`
	Data   json.RawMessage `json:"data,omitempty"` // only from GetEvent: bodies can be 1 MiB each
	// DeliveryCounts counts the event's deliveries by status (in lists).
	DeliveryCounts map[string]int `json:"delivery_counts,omitempty"`
	// Deliveries are the event's deliveries with their attempts (from GetEvent).
	Deliveries []Delivery `json:"deliveries,omitempty"`
}

// Delivery is one (event, webhook) pair and its state.
type Delivery struct {
	ID        int64  `json:"id"`
	EventID   string `json:"event_id"`
	Event     string `json:"event"`
	WebhookID string `json:"webhook_id"`
	// TargetURL is the webhook's current URL, masked by webhook.MaskURL (a password
	// or token in it is not shown); nil once the webhook is deleted.
	TargetURL      *string    `json:"target_url"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
	LastStatusCode *int       `json:"last_status_code"`
	LastError      *string    `json:"last_error"`
	CreatedAt      time.Time  `json:"created_at"`
	DeliveredAt    *time.Time `json:"delivered_at"`
	// OrderingKey is the key of a delivery of an ordered webhook (nil for any other).
	OrderingKey *string `json:"ordering_key"`
	// Held says the delivery waits for an earlier one of its key (pending, with no
	// next attempt until that one succeeds or is skipped).
	Held bool `json:"held"`
	// AttemptLog is every attempt, oldest first (from GetEvent and GetDelivery).
	AttemptLog []Attempt `json:"attempt_log,omitempty"`
}

// Attempt is one HTTP attempt of a delivery, as recorded.
type Attempt struct {
	Attempt         int       `json:"attempt"`
	StartedAt       time.Time `json:"started_at"`
	DurationMS      int       `json:"duration_ms"`
	StatusCode      *int      `json:"status_code"`
	Error           *string   `json:"error"`
	ResponseExcerpt *string   `json:"response_excerpt"`
}

// Filter selects events or deliveries. Zero fields do not filter.
type Filter struct {
	// Event is an event name, a trailing wildcard (post.*) or *.
	Event string
	// EventID restricts deliveries to one event (deliveries only).
	EventID string
	// Webhook is a webhook id: deliveries to it, or events with a delivery to it.
	Webhook string
	// Source is who created the event: "emit", "stripe", "ghost:<site id>", or "ghost"
	// for every Ghost site.
	Source string
	// Status is a delivery status: deliveries in it, or events with a delivery in it.
	Status string
	// Since and Until bound created_at: Since <= created_at < Until.
	Since, Until time.Time
	// Limit is the page size (DefaultLimit when zero, at most MaxLimit).
	Limit int
	// Cursor continues from the previous page's Next.
	Cursor string
}

// ErrNotFound is returned for an unknown event or delivery.
var ErrNotFound = store.ErrNotFound

func (f *Filter) check() error {
	if f.Limit == 0 {
		f.Limit = DefaultLimit
	}
	if f.Limit < 1 || f.Limit > MaxLimit {
		return invalid.New("limit", "limit must be between 1 and %d, got %d", MaxLimit, f.Limit)
	}
	if _, ok := store.ParseStatus(f.Status); f.Status != "" && !ok {
		return invalid.New("status", "status must be one of %s, got %q", store.StatusNames(), clip(f.Status))
	}
	if f.EventID != "" {
		id, err := uuid.Parse(f.EventID)
		if err != nil {
			return invalid.New("event_id", "event id must be a UUID, got %q", clip(f.EventID))
		}
		f.EventID = id.String()
	}
	if f.Source != "" && !validSource(f.Source) {
		return invalid.New("source", "source must be emit, stripe, ghost or ghost:<site id>, got %q", clip(f.Source))
	}
	if len(f.Event) > 50 {
		return invalid.New("event", "event must be at most 50 characters")
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return invalid.New("until", "until must be after since")
	}
	return nil
}

var sourcePattern = regexp.MustCompile(`^(emit|stripe|ghost(:[0-9a-f]{24})?)$`)

func validSource(s string) bool { return sourcePattern.MatchString(s) }

func clip(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

// ParseTime reads an instant for --since/--until and the API's since/until: RFC 3339
// ("2024-05-01T12:00:00Z"), a date ("2024-05-01", midnight UTC), or a duration back
// from now ("24h", "90m", "7d").
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 && n <= 36500 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is not a time: use RFC 3339 (2024-05-01T12:00:00Z), a date (2024-05-01) or a duration ago (24h, 7d)", clip(s))
}

// where builds a WHERE clause with numbered arguments.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

func (w *where) arg(a any) string {
	w.args = append(w.args, a)
	return "$" + strconv.Itoa(len(w.args))
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// eventFilters adds the filters on the event itself: its name (f.Event) and source
// (f.Source, "ghost" meaning every Ghost site), on the columns given.
func (w *where) eventFilters(eventCol, sourceCol string, f Filter) {
	if f.Event != "" {
		w.eventMatch(eventCol, f.Event)
	}
	switch {
	case f.Source == "ghost":
		w.add("starts_with(" + sourceCol + ", 'ghost:')")
	case f.Source != "":
		w.add(sourceCol+" = ?", f.Source)
	}
}

// eventMatch applies the fan-out's matching rule (relay.event_matches: exact, post.*,
// *) to col.
func (w *where) eventMatch(col, pattern string) {
	w.add("relay.event_matches(?, "+col+")", pattern)
}

// Store reads the audit trail; redelivery is store.Redeliver.
type Store struct{ Pool *pgxpool.Pool }

// ListEvents returns events newest first (in reverse commit order), each with its
// deliveries counted by status, and the cursor of the next page ("" at the end).
func (s Store) ListEvents(ctx context.Context, f Filter) ([]Event, string, error) {
	if err := f.check(); err != nil {
		return nil, "", err
	}
	var w where
	w.eventFilters("e.event", "e.source", f)
	if !f.Since.IsZero() {
		w.add("e.created_at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		w.add("e.created_at < ?", f.Until)
	}
	if f.Webhook != "" || f.Status != "" {
		sub := "EXISTS (SELECT 1 FROM relay.deliveries d WHERE d.event_id = e.id"
		if f.Webhook != "" {
			sub += " AND d.webhook_id = " + w.arg(f.Webhook)
		}
		if f.Status != "" {
			sub += " AND d.status = " + w.arg(f.Status)
		}
		w.add(sub + ")")
	}
	if f.Cursor != "" {
		tx, off, err := decodeEventCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		w.add("(e.transaction_id, e.\"offset\") < (?::xid8, ?::bigint)", tx, off)
	}
	q := `SELECT e.id::text, coalesce(e.event, ''), e.created_at, e.source, e.transaction_id::text, e."offset",
		(SELECT json_object_agg(s.status, s.n) FROM
			(SELECT d.status, count(*) AS n FROM relay.deliveries d WHERE d.event_id = e.id GROUP BY d.status) s)
		FROM relay.events e` + w.sql() + `
		ORDER BY e.transaction_id DESC, e."offset" DESC LIMIT ` + w.arg(f.Limit+1)
	rows, err := s.Pool.Query(ctx, q, w.args...)
	if err != nil {
		return nil, "", fmt.Errorf("list events: %w", err)
	}
	defer rows.Close()
	var out []Event
	var lastTx string
	var lastOff int64
	next := ""
	for rows.Next() {
		if len(out) == f.Limit {
			next = encodeEventCursor(lastTx, lastOff)
			break
		}
		var e Event
		var counts []byte
		if err := rows.Scan(&e.ID, &e.Event, &e.CreatedAt, &e.Source, &lastTx, &lastOff, &counts); err != nil {
			return nil, "", fmt.Errorf("list events: %w", err)
		}
		e.DeliveryCounts = map[string]int{}
		if counts != nil {
			if err := json.Unmarshal(counts, &e.DeliveryCounts); err != nil {
				return nil, "", fmt.Errorf("list events: delivery counts: %w", err)
			}
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list events: %w", err)
	}
	return out, next, nil
}

// Cursors are opaque to callers; base64 keeps them URL-safe and discourages editing.
func encodeEventCursor(tx string, off int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("e:" + tx + ":" + strconv.FormatInt(off, 10)))
}

func decodeEventCursor(c string) (string, int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	parts := strings.Split(string(b), ":")
	if err != nil || len(parts) != 3 || parts[0] != "e" {
		return "", 0, invalid.New("cursor", "cursor is not one this API returned")
	}
	if _, err := strconv.ParseUint(parts[1], 10, 64); err != nil {
		return "", 0, invalid.New("cursor", "cursor is not one this API returned")
	}
	off, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil {
		return "", 0, invalid.New("cursor", "cursor is not one this API returned")
	}
	return parts[1], off, nil
}

func encodeDeliveryCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte("d:" + strconv.FormatInt(id, 10)))
}

func decodeDeliveryCursor(c string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	rest, ok := strings.CutPrefix(string(b), "d:")
	if err != nil || !ok {
		return 0, invalid.New("cursor", "cursor is not one this API returned")
	}
	id, err := strconv.ParseInt(rest, 10, 64)
	if err != nil {
		return 0, invalid.New("cursor", "cursor is not one this API returned")
	}
	return id, nil
}

// deliverySelect reads Delivery columns; the event name comes from the outbox row
// (kept while any delivery of it exists) and the URL from the webhook, if it still exists.
const deliverySelect = `SELECT d.id, d.event_id::text, coalesce(o.metadata ->> 'event', ''), d.webhook_id,
	w.target_url, d.status, d.attempts, d.next_attempt_at, d.last_status_code, d.last_error,
	d.created_at, d.delivered_at, d.ordering_key,
	d.status = 'pending' AND d.next_attempt_at IS NULL
	FROM relay.deliveries d
	LEFT JOIN relay.outbox o ON o."uuid"::uuid = d.event_id
	LEFT JOIN relay.webhooks w ON w.id = d.webhook_id`

func scanDelivery(row pgx.Row) (Delivery, error) {
	var d Delivery
	err := row.Scan(&d.ID, &d.EventID, &d.Event, &d.WebhookID, &d.TargetURL, &d.Status, &d.Attempts,
		&d.NextAttemptAt, &d.LastStatusCode, &d.LastError, &d.CreatedAt, &d.DeliveredAt, &d.OrderingKey, &d.Held)
	if d.TargetURL != nil {
		m := webhook.MaskURL(*d.TargetURL)
		d.TargetURL = &m
	}
	return d, err
}

// ListDeliveries returns deliveries newest first and the cursor of the next page.
func (s Store) ListDeliveries(ctx context.Context, f Filter) ([]Delivery, string, error) {
	if err := f.check(); err != nil {
		return nil, "", err
	}
	var w where
	w.eventFilters("(o.metadata ->> 'event')", "o.source", f)
	if f.EventID != "" {
		w.add("d.event_id = ?::uuid", f.EventID)
	}
	if f.Webhook != "" {
		w.add("d.webhook_id = ?", f.Webhook)
	}
	if f.Status != "" {
		w.add("d.status = ?", f.Status)
	}
	if !f.Since.IsZero() {
		w.add("d.created_at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		w.add("d.created_at < ?", f.Until)
	}
	if f.Cursor != "" {
		id, err := decodeDeliveryCursor(f.Cursor)
		if err != nil {
			return nil, "", err
		}
		w.add("d.id < ?", id)
	}
	q := deliverySelect + w.sql() + ` ORDER BY d.id DESC LIMIT ` + w.arg(f.Limit+1)
	rows, err := s.Pool.Query(ctx, q, w.args...)
	if err != nil {
		return nil, "", fmt.Errorf("list deliveries: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) { return scanDelivery(r) })
	if err != nil {
		return nil, "", fmt.Errorf("list deliveries: %w", err)
	}
	next := ""
	if len(out) > f.Limit {
		out = out[:f.Limit]
		next = encodeDeliveryCursor(out[len(out)-1].ID)
	}
	return out, next, nil
}

// GetEvent returns one event with its data and every delivery of it with all attempts.
func (s Store) GetEvent(ctx context.Context, id string) (Event, error) {
	u, err := uuid.Parse(id)
	if err != nil {
		return Event{}, invalid.New("id", "event id must be a UUID, got %q", clip(id))
	}
	var e Event
	var data string
	// The outbox directly rather than the relay.events view: its uuid index answers.
	err = s.Pool.QueryRow(ctx, `SELECT "uuid", coalesce(metadata ->> 'event', ''), created_at, source, payload::text
		FROM relay.outbox WHERE "uuid"::uuid = $1::uuid`, u.String()).Scan(&e.ID, &e.Event, &e.CreatedAt, &e.Source, &data)
	if errors.Is(err, pgx.ErrNoRows) {
		return Event{}, ErrNotFound
	}
	if err != nil {
		return Event{}, fmt.Errorf("get event %s: %w", id, err)
	}
	e.Data = json.RawMessage(data)
	rows, err := s.Pool.Query(ctx, deliverySelect+` WHERE d.event_id = $1::uuid ORDER BY d.id`, e.ID)
	if err != nil {
		return Event{}, fmt.Errorf("get deliveries of event %s: %w", id, err)
	}
	e.Deliveries, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Delivery, error) { return scanDelivery(r) })
	if err != nil {
		return Event{}, fmt.Errorf("get deliveries of event %s: %w", id, err)
	}
	if err := s.attachAttempts(ctx, e.Deliveries); err != nil {
		return Event{}, err
	}
	return e, nil
}

// GetDelivery returns one delivery with all its attempts.
func (s Store) GetDelivery(ctx context.Context, id int64) (Delivery, error) {
	d, err := scanDelivery(s.Pool.QueryRow(ctx, deliverySelect+` WHERE d.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Delivery{}, ErrNotFound
	}
	if err != nil {
		return Delivery{}, fmt.Errorf("get delivery %d: %w", id, err)
	}
	ds := []Delivery{d}
	if err := s.attachAttempts(ctx, ds); err != nil {
		return Delivery{}, err
	}
	return ds[0], nil
}

func (s Store) attachAttempts(ctx context.Context, ds []Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	ids := make([]int64, len(ds))
	byID := make(map[int64]*Delivery, len(ds))
	for i := range ds {
		ids[i] = ds[i].ID
		byID[ds[i].ID] = &ds[i]
		ds[i].AttemptLog = []Attempt{}
	}
	rows, err := s.Pool.Query(ctx, `SELECT delivery_id, attempt, started_at, duration_ms, status_code, error, response_excerpt
		FROM relay.delivery_attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt`, ids)
	if err != nil {
		return fmt.Errorf("get attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var a Attempt
		if err := rows.Scan(&id, &a.Attempt, &a.StartedAt, &a.DurationMS, &a.StatusCode, &a.Error, &a.ResponseExcerpt); err != nil {
			return fmt.Errorf("get attempts: %w", err)
		}
		byID[id].AttemptLog = append(byID[id].AttemptLog, a)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("get attempts: %w", err)
	}
	return nil
}
