package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/relayhq/relay/relay/internal/invalid"
)

// A replay creates deliveries, from the kept log, for the events of a window that a
// webhook matches, including events emitted before the webhook existed (schema:
// 00013_replay). It is a job the running relays work through in batches (ReplayStep),
// in the outbox's commit order, each batch one short transaction that also moves the
// job's position: a relay that dies mid-replay loses nothing and any relay carries on.
//
// Replayed work yields to live work. A batch waits while the replay has ReplayPending
// deliveries pending; the claim gives each webhook its own share of the workers; and
// live deliveries mostly skip the claim (the fan-out leases them to its relay). Only
// events the fan-out has read (at or before the consumer group's position) are
// replayed, so a replay never runs ahead of the live order.
//
// For an ordered webhook, a replay delivers each key's history in commit order before
// the key's live events: while it runs, the webhook's fence (its position) holds every
// delivery past it, and the releases (releaseNextSQL) let go only what is before it.

// ReplayPending bounds a replay's pending deliveries (due or held); its next batch
// waits until they are fewer. Small enough that a replayed backlog never floods the
// queue, large enough to keep a fast receiver busy between batches.
const ReplayPending = 2000

// A batch is kept short: its transaction, like any open one, holds back what the outbox
// reader sees (watermill-sql reads only below the oldest open transaction), so a long
// batch would delay every live event by its length. replayScan bounds the events a
// batch reads, wanted or not; replayBatch the deliveries it creates.
const (
	replayScan  = 1000
	replayBatch = 250
)

// ReplayRequest asks for a replay.
type ReplayRequest struct {
	WebhookID string
	// Since and Until bound the window by the events' created_at: Since <= created_at <
	// Until. A zero Until is the replay's creation: what comes later is delivered live.
	Since, Until time.Time
	// EventPattern narrows the events to those it matches (a name, post.*, or *), besides
	// the webhook's own pattern; empty: all the webhook matches.
	EventPattern string
	// StripeSignature signs replayed Stripe events with Stripe-Signature (to a webhook
	// marked for it). Off by default, as for a redelivery: Ghost does not deduplicate.
	StripeSignature bool
	// RequestedBy names who asked: "cli", or an Admin API key's id.
	RequestedBy string
}

// Replay is a replay job and how far it went.
type Replay struct {
	ID           int64      `json:"id"`
	WebhookID    string     `json:"webhook_id"`
	Since        time.Time  `json:"since"`
	Until        time.Time  `json:"until"`
	EventPattern *string    `json:"event,omitempty"`
	Status       string     `json:"status"` // running, done or cancelled
	Reason       *string    `json:"reason,omitempty"`
	Scanned      int64      `json:"scanned"`          // events of the window looked at
	Created      int64      `json:"created"`          // deliveries created
	Existing     int64      `json:"already_existing"` // events the webhook had a delivery of
	Skipped      int64      `json:"skipped"`          // events of the window it does not match
	Pending      int64      `json:"pending"`          // its deliveries still pending
	RequestedBy  string     `json:"requested_by"`
	CreatedAt    time.Time  `json:"created_at"`
	UpdatedAt    time.Time  `json:"updated_at"`
	FinishedAt   *time.Time `json:"finished_at"`
}

// ErrReplayFinished is returned by CancelReplay for a replay that is no longer running.
var ErrReplayFinished = errors.New("the replay has finished")

// CreateReplay starts a replay and returns it; the relays then work through it. The
// webhook must exist and be active.
func CreateReplay(ctx context.Context, db Beginner, r ReplayRequest) (Replay, error) {
	var out Replay
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var err error
		out, err = CreateReplayIn(ctx, tx, r)
		return err
	})
	return out, err
}

// CreateReplayIn starts a replay in tx; `relay webhooks add --replay-from` calls it in
// the webhook's own transaction, so that no fan-out sees the webhook without its fence.
func CreateReplayIn(ctx context.Context, tx pgx.Tx, r ReplayRequest) (Replay, error) {
	if r.Since.IsZero() {
		return Replay{}, invalid.New("since", "a replay needs since: the start of its window")
	}
	if !r.Until.IsZero() && !r.Since.Before(r.Until) {
		return Replay{}, invalid.New("until", "until (%s) must come after since (%s)", r.Until.UTC().Format(time.RFC3339), r.Since.UTC().Format(time.RFC3339))
	}
	var status string
	var ordered bool
	if err := tx.QueryRow(ctx, `SELECT status, ordered FROM relay.webhooks WHERE id = $1 FOR UPDATE`, r.WebhookID).
		Scan(&status, &ordered); errors.Is(err, pgx.ErrNoRows) {
		return Replay{}, ErrNotFound
	} else if err != nil {
		return Replay{}, fmt.Errorf("replay: read webhook %s: %w", r.WebhookID, err)
	}
	if status != "active" {
		return Replay{}, ErrWebhookInactive
	}
	var until *time.Time
	if !r.Until.IsZero() {
		until = &r.Until
	}
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO relay.replays (webhook_id, since, until, event_pattern, sign_stripe, requested_by)
		VALUES ($1, $2, coalesce($3, now()), nullif($4, ''), $5, $6) RETURNING id`,
		r.WebhookID, r.Since, until, r.EventPattern, r.StripeSignature, r.RequestedBy).Scan(&id); err != nil {
		return Replay{}, mapReplayError(err, r)
	}
	// Relays look for new replays when this commits, not at their next idle look.
	if _, err := tx.Exec(ctx, `SELECT pg_notify('relay_replays', '')`); err != nil {
		return Replay{}, fmt.Errorf("replay: announce: %w", err)
	}
	if ordered {
		// The fence at the very start: until the first batch, every delivery of the
		// webhook waits (a replay's own come before the live ones).
		if _, err := tx.Exec(ctx, `UPDATE relay.webhooks SET replay_fence_tx = '0', replay_fence_offset = -1
			WHERE id = $1 AND replay_fence_tx IS NULL`, r.WebhookID); err != nil {
			return Replay{}, fmt.Errorf("replay: fence webhook %s: %w", r.WebhookID, err)
		}
	}
	return getReplay(ctx, tx, id)
}

// mapReplayError says in words what the database refused of a replay's input.
func mapReplayError(err error, r ReplayRequest) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case pgErr.ConstraintName == "replays_event_pattern_check", pgErr.Code == "22001":
			return invalid.New("event", "unknown event pattern %q: use an event name, a wildcard such as post.*, or *", clip(r.EventPattern))
		}
	}
	return fmt.Errorf("replay: create: %w", err)
}

// replaySelect reads a replay with its pending deliveries.
const replaySelect = `
SELECT r.id, r.webhook_id, r.since, r.until, r.event_pattern, r.status, r.reason,
       r.scanned, r.created, r.existing, r.skipped,
       (SELECT count(*) FROM relay.deliveries d WHERE d.replay_id = r.id AND d.status = 'pending'),
       r.requested_by, r.created_at, r.updated_at, r.finished_at
  FROM relay.replays r`

func scanReplay(row pgx.Row) (Replay, error) {
	var r Replay
	err := row.Scan(&r.ID, &r.WebhookID, &r.Since, &r.Until, &r.EventPattern, &r.Status, &r.Reason,
		&r.Scanned, &r.Created, &r.Existing, &r.Skipped, &r.Pending,
		&r.RequestedBy, &r.CreatedAt, &r.UpdatedAt, &r.FinishedAt)
	return r, err
}

func getReplay(ctx context.Context, q Querier, id int64) (Replay, error) {
	r, err := scanReplay(q.QueryRow(ctx, replaySelect+` WHERE r.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Replay{}, ErrNotFound
	}
	if err != nil {
		return Replay{}, fmt.Errorf("read replay %d: %w", id, err)
	}
	return r, nil
}

// ReplayWindow counts the events of a replay's window, for a progress bar: on the
// created_at index, once (a large window takes a moment).
func ReplayWindow(ctx context.Context, q Querier, r Replay) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, `SELECT count(*) FROM relay.outbox WHERE created_at >= $1 AND created_at < $2`,
		r.Since, r.Until).Scan(&n); err != nil {
		return 0, fmt.Errorf("count the events of replay %d's window: %w", r.ID, err)
	}
	return n, nil
}

// GetReplay reads one replay.
func GetReplay(ctx context.Context, q Querier, id int64) (Replay, error) {
	return getReplay(ctx, q, id)
}

// ReplayFilter selects replays to list.
type ReplayFilter struct {
	WebhookID string // only this webhook's; empty: any
	Status    string // only those in this status (running, done, cancelled); empty: any
	// IntegrationID: only replays to this integration's webhooks (an API key's view);
	// empty: any.
	IntegrationID string
	Limit         int
}

// ListReplays lists replays, newest first.
func ListReplays(ctx context.Context, q Querier, f ReplayFilter) ([]Replay, error) {
	rows, err := q.Query(ctx, replaySelect+`
		WHERE ($1 = '' OR r.webhook_id = $1)
		  AND ($2 = '' OR EXISTS (SELECT 1 FROM relay.webhooks w WHERE w.id = r.webhook_id AND w.integration_id = $2))
		  AND ($4 = '' OR r.status = $4)
		ORDER BY r.id DESC LIMIT $3`, f.WebhookID, f.IntegrationID, f.Limit, f.Status)
	if err != nil {
		return nil, fmt.Errorf("list replays: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Replay, error) { return scanReplay(row) })
	if err != nil {
		return nil, fmt.Errorf("list replays: %w", err)
	}
	return out, nil
}

// CancelReplay stops a running replay; the deliveries it created stay (redeliver or let
// them go). ErrReplayFinished if it had finished.
func CancelReplay(ctx context.Context, db Beginner, id int64, reason string) (Replay, error) {
	var webhookID string
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var status string
		if err := tx.QueryRow(ctx, `SELECT status, webhook_id FROM relay.replays WHERE id = $1 FOR UPDATE`, id).
			Scan(&status, &webhookID); errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return fmt.Errorf("cancel replay %d: %w", id, err)
		}
		if status != "running" {
			return ErrReplayFinished
		}
		return finishReplay(ctx, tx, id, webhookID, "cancelled", reason)
	})
	if err != nil {
		return Replay{}, err
	}
	if err := unfenceAfter(ctx, db, webhookID); err != nil {
		return Replay{}, err
	}
	return getReplay(ctx, db, id)
}

// finishReplay ends a replay in tx and takes down its webhook's fence unless another
// replay of it still runs; unfenceAfter then lets the held keys go.
func finishReplay(ctx context.Context, tx pgx.Tx, id int64, webhookID, status, reason string) error {
	if _, err := tx.Exec(ctx, `UPDATE relay.replays SET status = $2, reason = nullif($3, ''), finished_at = now(), updated_at = now()
		WHERE id = $1`, id, status, reason); err != nil {
		return fmt.Errorf("finish replay %d: %w", id, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE relay.webhooks SET replay_fence_tx = NULL, replay_fence_offset = NULL
		WHERE id = $1 AND replay_fence_tx IS NOT NULL
		  AND NOT EXISTS (SELECT 1 FROM relay.replays r WHERE r.webhook_id = $1 AND r.status = 'running')`, webhookID); err != nil {
		return fmt.Errorf("finish replay %d: take down the fence: %w", id, err)
	}
	return nil
}

// unfenceAfter lets go, after a fence moved or came down, the first held delivery of
// every key of the webhook that nothing holds any more.
func unfenceAfter(ctx context.Context, db Querier, webhookID string) error {
	rows, err := db.Query(ctx, `SELECT DISTINCT ON (ordering_key) id FROM relay.deliveries
		WHERE webhook_id = $1 AND ordering_key IS NOT NULL AND status = 'pending' AND next_attempt_at IS NULL
		ORDER BY ordering_key, event_tx, event_offset`, webhookID)
	if err != nil {
		return fmt.Errorf("release the keys of webhook %s: %w", webhookID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return fmt.Errorf("release the keys of webhook %s: %w", webhookID, err)
	}
	for len(ids) > 0 {
		n := min(len(ids), 5000)
		if _, _, err := ReleaseNext(ctx, db, ids[:n], "", Next{}); err != nil {
			return fmt.Errorf("release the keys of webhook %s: %w", webhookID, err)
		}
		ids = ids[n:]
	}
	return nil
}

// RunningReplays lists the ids of the replays still running, oldest first.
func RunningReplays(ctx context.Context, q Querier) ([]int64, error) {
	rows, err := q.Query(ctx, `SELECT id FROM relay.replays WHERE status = 'running' ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list running replays: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list running replays: %w", err)
	}
	return ids, nil
}

// Stepped is what one ReplayStep did.
type Stepped struct {
	// Busy: another relay is working on the replay; Waiting: it has ReplayPending
	// deliveries pending, or the fan-out has not read further yet.
	Busy, Waiting bool
	// Finished: the replay is done (or was cancelled: its webhook is gone or disabled).
	Finished bool
	// Created deliveries in this step.
	Created int
}

// replayBatchSQL reads the next events after the replay's position ($3, $4), up to the
// consumer group's ($5, $6), and creates the deliveries of those of the window ($7, $8)
// that the webhook ($2) and the pattern ($9) match, up to $11 of them: the batch ends at
// the last of those, or at the last event read. For an ordered webhook a delivery is
// held, as at fan-out, when its key has one unfinished or an earlier one in the batch.
// The events are locked FOR KEY SHARE while their deliveries are made, so that the
// event retention prune (which locks them FOR UPDATE SKIP LOCKED) never deletes an event
// a delivery is being created for. The one row returned: events read, in the window,
// wanted, deliveries created, the new position, and the held deliveries created.
const replayBatchSQL = `
WITH scan AS (
    SELECT o."uuid", o.metadata ->> 'event' AS event, o.payload, o.ordering_key, o.created_at, o.transaction_id, o."offset"
      FROM relay.outbox o
     WHERE (o.transaction_id, o."offset") > ($3::xid8, $4::bigint)
       AND (o.transaction_id, o."offset") <= ($5::xid8, $6::bigint)
     ORDER BY o.transaction_id, o."offset"
     LIMIT $10
), judged AS (
    SELECT s.*, s.created_at >= $7 AND s.created_at < $8 AS in_window,
           s.created_at >= $7 AND s.created_at < $8 AND relay.event_matches(w.event, s.event)
               AND ($9::text IS NULL OR relay.event_matches($9, s.event)) AS wanted,
           CASE WHEN w.ordered THEN relay.event_key(s.event, s.payload, s.ordering_key) END AS okey
      FROM scan s, relay.webhooks w
     WHERE w.id = $2
), counted AS (
    SELECT j.*, count(*) FILTER (WHERE j.wanted) OVER (ORDER BY j.transaction_id, j."offset") AS n
      FROM judged j
), batch AS (
    SELECT * FROM counted WHERE n <= $11 AND NOT (n = $11 AND NOT wanted)
), fresh AS (
    SELECT b.*,
           CASE WHEN b.okey IS NULL THEN false
                ELSE row_number() OVER (PARTITION BY b.okey ORDER BY b.transaction_id, b."offset") > 1
                     OR EXISTS (SELECT 1 FROM relay.deliveries x
                                 WHERE x.webhook_id = $2 AND x.ordering_key = b.okey
                                   AND x.status IN ('pending', 'failed')) END AS held
      FROM batch b
     WHERE b.wanted
       AND NOT EXISTS (SELECT 1 FROM relay.deliveries x WHERE x.event_id = b."uuid"::uuid AND x.webhook_id = $2)
), locked AS (
    SELECT o."uuid" FROM relay.outbox o
     WHERE (o.transaction_id, o."offset") IN (SELECT transaction_id, "offset" FROM fresh)
       FOR KEY SHARE
), ins AS (
    INSERT INTO relay.deliveries (event_id, webhook_id, next_attempt_at, ordering_key, event_tx, event_offset,
                                  replay_id, sign_stripe)
    SELECT f."uuid"::uuid, $2, CASE WHEN NOT f.held THEN now() END, f.okey,
           CASE WHEN f.okey IS NOT NULL THEN f.transaction_id END, CASE WHEN f.okey IS NOT NULL THEN f."offset" END,
           $1, $12
      FROM fresh f JOIN locked l ON l."uuid" = f."uuid"
     ORDER BY f.transaction_id, f."offset"
    ON CONFLICT (event_id, webhook_id) DO NOTHING
    RETURNING id, next_attempt_at
), notified AS (
    SELECT pg_notify('relay_deliveries', '') FROM (SELECT 1 FROM ins WHERE next_attempt_at IS NOT NULL LIMIT 1) AS due
), last AS (
    SELECT transaction_id, "offset" FROM batch ORDER BY transaction_id DESC, "offset" DESC LIMIT 1
)
SELECT (SELECT count(*) FROM batch)::int,
       (SELECT count(*) FROM batch WHERE in_window)::int,
       (SELECT count(*) FROM batch WHERE wanted)::int,
       (SELECT count(*) FROM ins)::int,
       (SELECT transaction_id FROM last), (SELECT "offset" FROM last),
       (SELECT array_agg(id) FROM ins WHERE next_attempt_at IS NULL),
       (SELECT count(*) FROM notified)::int`

// ReplayStep works one batch of replay id, creating at most limit deliveries, if no
// other relay is on it and it has room, and finishes it once it has passed every event
// of its window.
func ReplayStep(ctx context.Context, db Beginner, id int64, limit int) (Stepped, error) {
	var st Stepped
	var webhookID string
	var ordered, unfence bool
	var held []int64
	err := pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		st, webhookID, ordered, held = Stepped{}, "", false, nil
		var (
			since, until          time.Time
			pattern               *string
			sign                  bool
			curTx                 *string
			curOff                *int64
			whStatus              *string
			whOrdered             *bool
			ackTx                 *string
			ackOff                *int64
			horizonPassed, behind bool
		)
		err := tx.QueryRow(ctx, `
			SELECT r.webhook_id, r.since, r.until, r.event_pattern, r.sign_stripe, r.cursor_tx::text, r.cursor_offset,
			       w.status, w.ordered, g.last_processed_transaction_id::text, g.offset_acked,
			       pg_snapshot_xmin(pg_current_snapshot()) >= r.horizon
			  FROM relay.replays r
			  LEFT JOIN relay.webhooks w ON w.id = r.webhook_id
			  LEFT JOIN relay.outbox_offsets g ON g.consumer_group = $2
			 WHERE r.id = $1 AND r.status = 'running'
			   FOR UPDATE OF r SKIP LOCKED`, id, ConsumerGroup).
			Scan(&webhookID, &since, &until, &pattern, &sign, &curTx, &curOff, &whStatus, &whOrdered, &ackTx, &ackOff, &horizonPassed)
		if errors.Is(err, pgx.ErrNoRows) {
			st.Busy = true // another relay has it, or it has finished
			return nil
		}
		if err != nil {
			return fmt.Errorf("read replay %d: %w", id, err)
		}
		if whStatus == nil || *whStatus != "active" {
			st.Finished, unfence = true, whStatus != nil
			reason := "its webhook was deleted"
			if whStatus != nil {
				reason = "its webhook was disabled"
			}
			return finishReplay(ctx, tx, id, webhookID, "cancelled", reason)
		}
		ordered = *whOrdered
		var pending int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM relay.deliveries WHERE replay_id = $1 AND status = 'pending'`, id).
			Scan(&pending); err != nil {
			return fmt.Errorf("replay %d: count its pending deliveries: %w", id, err)
		}
		room := min(ReplayPending-pending, replayBatch, limit)
		if room <= 0 {
			st.Waiting = true
			return nil
		}
		from, fromOff := "0", int64(-1)
		if curTx != nil {
			from, fromOff = *curTx, *curOff
		}
		to, toOff := "0", int64(-1)
		if ackTx != nil {
			to, toOff = *ackTx, *ackOff
		}
		var read, inWindow, wanted, created, notified int
		var endTx *string
		var endOff *int64
		if err := tx.QueryRow(ctx, replayBatchSQL, id, webhookID, from, fromOff, to, toOff, since, until, pattern,
			replayScan, room, sign).Scan(&read, &inWindow, &wanted, &created, &endTx, &endOff, &held, &notified); err != nil {
			return fmt.Errorf("replay %d: batch: %w", id, err)
		}
		st.Created = created
		if endTx != nil {
			from, fromOff = *endTx, *endOff
			if _, err := tx.Exec(ctx, `UPDATE relay.replays
				SET cursor_tx = $2::xid8, cursor_offset = $3, scanned = scanned + $4, created = created + $5,
				    existing = existing + $6, skipped = skipped + $7, updated_at = now()
				WHERE id = $1`, id, from, fromOff, inWindow, created, wanted-created, inWindow-wanted); err != nil {
				return fmt.Errorf("replay %d: move on: %w", id, err)
			}
			if ordered {
				if _, err := tx.Exec(ctx, `UPDATE relay.webhooks SET replay_fence_tx = $2::xid8, replay_fence_offset = $3
					WHERE id = $1 AND replay_fence_tx IS NOT NULL`, webhookID, from, fromOff); err != nil {
					return fmt.Errorf("replay %d: move the fence: %w", id, err)
				}
				unfence = true
			}
		}
		if read == replayScan || wanted >= room {
			return nil // more to read now
		}
		// Everything the fan-out has read is passed. Done once every transaction that
		// had started when the replay was created has ended and its events are passed.
		if horizonPassed {
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM relay.outbox o, relay.replays r
				WHERE r.id = $1 AND (o.transaction_id, o."offset") > ($2::xid8, $3::bigint) AND o.transaction_id < r.horizon)`,
				id, from, fromOff).Scan(&behind); err != nil {
				return fmt.Errorf("replay %d: check its end: %w", id, err)
			}
			if !behind {
				st.Finished, unfence = true, ordered
				return finishReplay(ctx, tx, id, webhookID, "done", "")
			}
		}
		st.Waiting = true
		return nil
	})
	if err != nil {
		return Stepped{}, err
	}
	// The second looks, after the commit (as after a fan-out): the held deliveries made,
	// and the keys the moved or lowered fence lets go.
	if len(held) > 0 {
		if _, _, err := ReleaseNext(ctx, db, held, "", Next{}); err != nil {
			return st, fmt.Errorf("replay %d: %w", id, err)
		}
	}
	if unfence {
		if err := unfenceAfter(ctx, db, webhookID); err != nil {
			return st, fmt.Errorf("replay %d: %w", id, err)
		}
	}
	return st, nil
}
