package console

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/relayhq/relay/relay/internal/status"
	"github.com/relayhq/relay/relay/internal/store"
	"github.com/relayhq/relay/relay/internal/webhook"
)

// A page reads in one read-only transaction: one snapshot, so its figures agree with
// each other. Parallel workers are off: the console's queries touch few rows, and on a
// small machine starting workers costs more than it saves. Plans are made for each
// query's values: pgx prepares statements, and a generic plan (which PostgreSQL picks
// after a few executions) cannot tell a range of ids or a rare status from a common
// one. A statement that somehow runs long is stopped rather than left to hold a
// connection the pipeline may need.
func readTx(ctx context.Context, pool *pgxpool.Pool, fn func(pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL max_parallel_workers_per_gather = 0; SET LOCAL plan_cache_mode = force_custom_plan;
			SET LOCAL statement_timeout = '10s'`); err != nil {
			return fmt.Errorf("console read: %w", err)
		}
		return fn(tx)
	})
}

// hookRow is a webhook as the console lists it: never its secret (only whether it has
// one), its URL masked.
type hookRow struct {
	ID              string
	Event           string
	URL             string // masked
	Name            *string
	HasSecret       bool
	Status          string
	DisabledReason  *string
	StripeSignature bool
	// Ordered webhooks deliver each key's events one at a time: Held counts their
	// pending deliveries waiting for an earlier one of their key, BlockedKeys the keys
	// a failed delivery holds.
	Ordered         bool
	Held            int64
	BlockedKeys     int64
	Owner           *string // the integration's name; nil: the operator's
	LastTriggeredAt *time.Time
	LastStatus      *string
	LastError       *string
	FailingSince    *time.Time
	CreatedAt       time.Time
	APIVersion      string
	Pending, Failed int64
	Day             stats
}

// Label is how a webhook is named in lists: its name, else its event.
func (h hookRow) Label() string {
	if h.Name != nil && *h.Name != "" {
		return *h.Name
	}
	return h.Event
}

// Failing reports a webhook whose last attempts failed, or that has given-up deliveries.
func (h hookRow) Failing() bool {
	return h.Status != "active" || h.FailingSince != nil || h.Failed > 0
}

const hookColumns = `w.id, w.event, w.target_url, w.name, w.secret IS NOT NULL, w.status, w.disabled_reason,
	w.stripe_signature, w.ordered, i.name, w.last_triggered_at, w.last_triggered_status, w.last_attempt_error, w.failing_since, w.created_at,
	w.api_version`

func scanHook(r pgx.Row) (hookRow, error) {
	var h hookRow
	err := r.Scan(&h.ID, &h.Event, &h.URL, &h.Name, &h.HasSecret, &h.Status, &h.DisabledReason, &h.StripeSignature,
		&h.Ordered, &h.Owner, &h.LastTriggeredAt, &h.LastStatus, &h.LastError, &h.FailingSince, &h.CreatedAt, &h.APIVersion)
	h.URL = webhook.MaskURL(h.URL)
	return h, err
}

// listHooks returns every webhook (or one) with its pending and failed counts and its
// last 24 hours, oldest first.
func listHooks(ctx context.Context, q store.Querier, id string) ([]hookRow, error) {
	hooks, _, err := listHooksCounted(ctx, q, id)
	return hooks, err
}

// listHooksCounted is listHooks, and the unfinished deliveries of every webhook counted
// (the deleted ones' included).
func listHooksCounted(ctx context.Context, q store.Querier, id string) ([]hookRow, status.WebhookCounts, error) {
	var totals status.WebhookCounts
	where, args := "", []any{}
	if id != "" {
		where, args = " WHERE w.id = $1", []any{id}
	}
	rows, err := q.Query(ctx, `SELECT `+hookColumns+` FROM relay.webhooks w
		LEFT JOIN relay.integrations i ON i.id = w.integration_id`+where+` ORDER BY w.created_at, w.id`, args...)
	if err != nil {
		return nil, totals, fmt.Errorf("list webhooks: %w", err)
	}
	hooks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (hookRow, error) { return scanHook(r) })
	if err != nil {
		return nil, totals, fmt.Errorf("list webhooks: %w", err)
	}
	if len(hooks) == 0 && id != "" {
		return nil, totals, nil
	}
	// Counted as `relay status` counts them (package status), through the partial
	// indexes: the cost follows the trouble, not the history.
	counts, err := status.ReadWebhookCounts(ctx, q, id)
	if err != nil {
		return nil, totals, err
	}
	for _, c := range counts {
		totals.Pending += c.Pending
		totals.Failed += c.Failed
		totals.Held += c.Held
		totals.BlockedKeys += c.BlockedKeys
	}
	day, err := webhookStats(ctx, q, daySince(time.Now()), id)
	if err != nil {
		return nil, totals, err
	}
	for i := range hooks {
		c := counts[hooks[i].ID]
		hooks[i].Pending, hooks[i].Failed, hooks[i].Held, hooks[i].BlockedKeys = c.Pending, c.Failed, c.Held, c.BlockedKeys
		hooks[i].Day = day[hooks[i].ID]
	}
	return hooks, totals, nil
}

// deliveryRow is a delivery in a list.
type deliveryRow struct {
	ID             int64
	EventID        string
	Event          string
	Source         string
	WebhookID      string
	WebhookLabel   *string // name or event of the webhook; nil once deleted
	WebhookURL     *string // masked
	Status         string
	Attempts       int
	LastStatusCode *int
	NextAttemptAt  *time.Time
	CreatedAt      time.Time
	// OrderingKey is the key of a delivery of an ordered webhook (nil for any other).
	OrderingKey *string
}

// Held reports a delivery waiting for an earlier one of its ordered key: pending with
// no next attempt (schema: 00011_ordering).
func (d deliveryRow) Held() bool { return isHeld(d.Status, d.NextAttemptAt) }

func isHeld(status string, next *time.Time) bool {
	return status == string(store.Pending) && next == nil
}

// deliveryFilter is what the Deliveries page filters by.
type deliveryFilter struct {
	Webhook string
	Event   string // a name, post.* or *
	EventID string
	Status  string
	Since   time.Time
	Until   time.Time
	Cursor  int64 // ids below it
}

// scanWindow bounds the rows one page examines for a filter no index answers (the
// event's name; the statuses succeeded and cancelled, which have no index because the
// hot path would maintain it): a page shows what matched among that many deliveries,
// and the next page goes on from where this one stopped. However rare the match, a page
// costs the same.
const scanWindow = 5000

// pageSize is the rows of one page.
const pageSize = 50

// listDeliveries returns a page of deliveries, newest first, and where the next page
// starts (0: this is the last); searchedTo is set when the page stopped at the end of
// its window rather than at pageSize matches.
func listDeliveries(ctx context.Context, q store.Querier, f deliveryFilter) (rows []deliveryRow, next int64, searchedTo *time.Time, err error) {
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Cursor > 0 {
		conds = append(conds, "d.id < "+arg(f.Cursor))
	}
	// A time range becomes a range of ids first (ids grow with created_at), so that a
	// range in the past costs what a recent one does; created_at is then checked exactly.
	if !f.Since.IsZero() {
		lo, err := idAtTime(ctx, q, f.Since.Add(-idSlack))
		if err != nil {
			return nil, 0, nil, err
		}
		conds = append(conds, "d.id >= "+arg(lo), "d.created_at >= "+arg(f.Since))
	}
	if !f.Until.IsZero() {
		hi, err := idAtTime(ctx, q, f.Until.Add(idSlack))
		if err != nil {
			return nil, 0, nil, err
		}
		conds = append(conds, "d.id < "+arg(hi), "d.created_at < "+arg(f.Until))
	}
	if f.Webhook != "" {
		conds = append(conds, "d.webhook_id = "+arg(f.Webhook))
	}
	// Pending and failed deliveries have partial indexes; the other statuses are checked
	// in the window.
	indexedStatus := f.Status == string(store.Pending) || f.Status == string(store.Failed)
	if indexedStatus {
		conds = append(conds, "d.status = "+arg(f.Status))
	}
	if f.EventID != "" {
		conds = append(conds, "d.event_id = "+arg(f.EventID)+"::uuid")
	}
	nKeyArgs := len(args)
	base := "relay.deliveries d"
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	var checks []string
	if f.Event != "" {
		checks = append(checks, "relay.event_matches("+arg(f.Event)+", o.metadata ->> 'event')")
	}
	if f.Status != "" && !indexedStatus {
		checks = append(checks, "d.status = "+arg(f.Status))
	}
	outer := where
	windowed := len(checks) > 0
	if windowed {
		base = "(SELECT d.* FROM relay.deliveries d" + where + " ORDER BY d.id DESC LIMIT " + strconv.Itoa(scanWindow) + ") d"
		outer = " WHERE " + strings.Join(checks, " AND ")
	}
	sql := `SELECT d.id, d.event_id::text, coalesce(o.metadata ->> 'event', ''), coalesce(o.source, ''), d.webhook_id,
		coalesce(nullif(w.name, ''), w.event), w.target_url, d.status, d.attempts, d.last_status_code, d.next_attempt_at, d.created_at, d.ordering_key
		FROM ` + base + `
		LEFT JOIN relay.outbox o ON o."uuid"::uuid = d.event_id
		LEFT JOIN relay.webhooks w ON w.id = d.webhook_id` + outer + `
		ORDER BY d.id DESC LIMIT ` + strconv.Itoa(pageSize+1)
	r, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("list deliveries: %w", err)
	}
	rows, err = pgx.CollectRows(r, func(r pgx.CollectableRow) (deliveryRow, error) {
		var d deliveryRow
		err := r.Scan(&d.ID, &d.EventID, &d.Event, &d.Source, &d.WebhookID, &d.WebhookLabel, &d.WebhookURL, &d.Status,
			&d.Attempts, &d.LastStatusCode, &d.NextAttemptAt, &d.CreatedAt, &d.OrderingKey)
		if d.WebhookURL != nil {
			m := webhook.MaskURL(*d.WebhookURL)
			d.WebhookURL = &m
		}
		return d, err
	})
	if err != nil {
		return nil, 0, nil, fmt.Errorf("list deliveries: %w", err)
	}
	if len(rows) > pageSize {
		rows = rows[:pageSize]
		return rows, rows[len(rows)-1].ID, nil, nil
	}
	if !windowed {
		return rows, 0, nil, nil
	}
	// Fewer matches than a page: was the window full (so older deliveries remain)? Its
	// last row is where the next page goes on.
	var last int64
	var lastAt time.Time
	err = q.QueryRow(ctx, `SELECT d.id, d.created_at FROM relay.deliveries d`+where+
		` ORDER BY d.id DESC OFFSET `+strconv.Itoa(scanWindow-1)+` LIMIT 1`, args[:nKeyArgs]...).Scan(&last, &lastAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return rows, 0, nil, nil
	}
	if err != nil {
		return nil, 0, nil, fmt.Errorf("list deliveries: %w", err)
	}
	return rows, last, &lastAt, nil
}

// idSlack is how far out of order in time two deliveries' ids may be: created_at is the
// start of the fan-out transaction that inserted the row, and those are short.
const idSlack = 10 * time.Minute

// idAtTimeSQL is a binary search on the deliveries' primary key, in one statement
// (about 20 index probes for a million rows, without a round trip each): each step
// looks at the first delivery at or after the middle of [l, h) and keeps the half
// where created_at reaches $1. It ends at the first id created at or after $1 (one past
// the last id when none was).
const idAtTimeSQL = `
WITH RECURSIVE b(l, h) AS (
    SELECT coalesce(min(id), 1), coalesce(max(id), 0) + 1 FROM relay.deliveries
    UNION ALL
    SELECT CASE WHEN p.created_at < $1 THEN p.id + 1 ELSE b.l END,
           CASE WHEN p.created_at < $1 THEN b.h ELSE (b.l + b.h) / 2 END
      FROM b LEFT JOIN LATERAL (SELECT d.id, d.created_at FROM relay.deliveries d
                                 WHERE d.id >= (b.l + b.h) / 2 ORDER BY d.id LIMIT 1) p ON true
     WHERE b.l < b.h
)
SELECT max(l) FROM b`

// idAtTime returns the first delivery id whose row was created at or after t.
func idAtTime(ctx context.Context, q store.Querier, t time.Time) (int64, error) {
	var id int64
	if err := q.QueryRow(ctx, idAtTimeSQL, t).Scan(&id); err != nil {
		return 0, fmt.Errorf("find deliveries at %s: %w", t, err)
	}
	return id, nil
}

// eventRow is an event in a list, with its deliveries counted by status.
type eventRow struct {
	ID        string
	Event     string
	Source    string
	CreatedAt time.Time
	Counts    map[string]int
	tx        string
	offset    int64
}

// Total is the event's deliveries.
func (e eventRow) Total() int {
	n := 0
	for _, c := range e.Counts {
		n += c
	}
	return n
}

type eventFilter struct {
	Event  string // name, post.* or *
	Source string // emit, stripe, ghost, ghost:<id>
	Since  time.Time
	Until  time.Time
	Cursor string
}

// eventWindow bounds the events one page examines for a name or source: those are
// checked on each row (no index has them, and adding one would cost every emit).
const eventWindow = 20000

// listEvents returns a page of events, newest first in commit order, and the cursor of
// the next page ("" at the end); searchedTo as for listDeliveries.
func listEvents(ctx context.Context, q store.Querier, f eventFilter) (rows []eventRow, next string, searchedTo *time.Time, err error) {
	var conds, outer []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.Cursor != "" {
		tx, off, err := decodeEventCursor(f.Cursor)
		if err != nil {
			return nil, "", nil, err
		}
		conds = append(conds, `(o.transaction_id, o."offset") < (`+arg(tx)+`::text::xid8, `+arg(off)+`::bigint)`)
	}
	if !f.Since.IsZero() {
		tx, err := txAtTime(ctx, q, f.Since.Add(-idSlack))
		if err != nil {
			return nil, "", nil, err
		}
		conds = append(conds, "o.transaction_id >= "+arg(strconv.FormatUint(tx, 10))+"::text::xid8", "o.created_at >= "+arg(f.Since))
	}
	if !f.Until.IsZero() {
		tx, err := txAtTime(ctx, q, f.Until.Add(idSlack))
		if err != nil {
			return nil, "", nil, err
		}
		conds = append(conds, "o.transaction_id < "+arg(strconv.FormatUint(tx, 10))+"::text::xid8", "o.created_at < "+arg(f.Until))
	}
	nKeyArgs := len(args)
	if f.Event != "" {
		outer = append(outer, "relay.event_matches("+arg(f.Event)+", o.metadata ->> 'event')")
	}
	switch {
	case f.Source == "ghost":
		outer = append(outer, "starts_with(o.source, 'ghost:')")
	case f.Source != "":
		outer = append(outer, "o.source = "+arg(f.Source))
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	windowed := len(outer) > 0
	base := "relay.outbox o"
	outerWhere := where
	cols := `o."uuid", o.metadata, o.source, o.created_at, o.transaction_id, o."offset"`
	if windowed {
		base = "(SELECT " + cols + " FROM relay.outbox o" + where + ` ORDER BY o.transaction_id DESC, o."offset" DESC LIMIT ` + strconv.Itoa(eventWindow) + ") o"
		outerWhere = " WHERE " + strings.Join(outer, " AND ")
	}
	sql := `WITH page AS (SELECT ` + cols + ` FROM ` + base + outerWhere + `
		ORDER BY o.transaction_id DESC, o."offset" DESC LIMIT ` + strconv.Itoa(pageSize+1) + `)
		SELECT p."uuid", coalesce(p.metadata ->> 'event', ''), p.source, p.created_at, p.transaction_id::text, p."offset",
		       (SELECT json_object_agg(s.status, s.n) FROM (SELECT d.status, count(*) AS n FROM relay.deliveries d
		         WHERE d.event_id = p."uuid"::uuid GROUP BY d.status) s)
		  FROM page p ORDER BY p.transaction_id DESC, p."offset" DESC`
	r, err := q.Query(ctx, sql, args...)
	if err != nil {
		return nil, "", nil, fmt.Errorf("list events: %w", err)
	}
	rows, err = pgx.CollectRows(r, func(r pgx.CollectableRow) (eventRow, error) {
		var e eventRow
		var counts []byte
		if err := r.Scan(&e.ID, &e.Event, &e.Source, &e.CreatedAt, &e.tx, &e.offset, &counts); err != nil {
			return e, err
		}
		e.Counts = map[string]int{}
		if counts != nil {
			if err := json.Unmarshal(counts, &e.Counts); err != nil {
				return e, err
			}
		}
		return e, nil
	})
	if err != nil {
		return nil, "", nil, fmt.Errorf("list events: %w", err)
	}
	if len(rows) > pageSize {
		rows = rows[:pageSize]
		last := rows[len(rows)-1]
		return rows, encodeEventCursor(last.tx, last.offset), nil, nil
	}
	if !windowed {
		return rows, "", nil, nil
	}
	var tx string
	var off int64
	var at time.Time
	err = q.QueryRow(ctx, `SELECT o.transaction_id::text, o."offset", o.created_at FROM relay.outbox o`+where+
		` ORDER BY o.transaction_id DESC, o."offset" DESC OFFSET `+strconv.Itoa(eventWindow-1)+` LIMIT 1`, args[:nKeyArgs]...).Scan(&tx, &off, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return rows, "", nil, nil
	}
	if err != nil {
		return nil, "", nil, fmt.Errorf("list events: %w", err)
	}
	return rows, encodeEventCursor(tx, off), &at, nil
}

func encodeEventCursor(tx string, off int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tx + ":" + strconv.FormatInt(off, 10)))
}

func decodeEventCursor(c string) (string, int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	tx, offS, ok := strings.Cut(string(b), ":")
	if err != nil || !ok {
		return "", 0, errBadCursor
	}
	if _, err := strconv.ParseUint(tx, 10, 64); err != nil {
		return "", 0, errBadCursor
	}
	off, err := strconv.ParseInt(offS, 10, 64)
	if err != nil {
		return "", 0, errBadCursor
	}
	return tx, off, nil
}

var errBadCursor = errors.New("this page link is not one the console made")

// txAtTimeSQL is idAtTimeSQL on the outbox's transaction ids (xid8, compared as
// numbers).
const txAtTimeSQL = `
WITH RECURSIVE b(l, h) AS (
    SELECT coalesce(min(transaction_id)::text::bigint, 0), coalesce(max(transaction_id)::text::bigint, -1) + 1 FROM relay.outbox
    UNION ALL
    SELECT CASE WHEN p.created_at < $1 THEN p.tx + 1 ELSE b.l END,
           CASE WHEN p.created_at < $1 THEN b.h ELSE (b.l + b.h) / 2 END
      FROM b LEFT JOIN LATERAL (SELECT o.transaction_id::text::bigint AS tx, o.created_at FROM relay.outbox o
                                 WHERE o.transaction_id >= ((b.l + b.h) / 2)::text::xid8
                                 ORDER BY o.transaction_id, o."offset" LIMIT 1) p ON true
     WHERE b.l < b.h
)
SELECT max(l) FROM b`

// txAtTime is idAtTime for events: the first transaction id whose event was created at
// or after t. An event's created_at is the start of its transaction and its transaction
// id is assigned at the transaction's first write, so the two agree in order unless a
// transaction waited longer than idSlack between its start and its first write.
func txAtTime(ctx context.Context, q store.Querier, t time.Time) (uint64, error) {
	var tx int64
	if err := q.QueryRow(ctx, txAtTimeSQL, t).Scan(&tx); err != nil {
		return 0, fmt.Errorf("find events at %s: %w", t, err)
	}
	return uint64(max(tx, 0)), nil
}
