package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// fanoutSQL creates one delivery per active webhook that matches an event and existed
// when it was emitted, for the event $1 and the events after it that this statement can
// see and that every open transaction has passed (at most $2 events): the rest of the
// outbox subscriber's batch, in one statement instead of one per event. ON CONFLICT
// makes every replay a no-op (a batch re-read after a crash, events fanned out ahead of
// the consumer offset): one row per (event, webhook). Delivery ids follow
// (transaction_id, offset), the order in which first attempts start.
//
// It leases the new deliveries it has room for to $3 (per webhook at most $5/$6, or $7
// for a webhook not listed; $8 in all) and returns them with what their attempts need,
// so that the relay that fanned them out sends them at once: no claim, no second
// commit, no notification on the way. Any others are left due and unleased for the
// claim (this relay's or another's), and then the claimers are notified.
//
// The first row returned lists the events covered; the others are the leased deliveries.
const fanoutSQL = `
WITH cur AS (
    SELECT transaction_id, "offset" FROM relay.outbox WHERE "uuid"::uuid = $1::uuid
), evs AS (
    -- LATERAL makes cur's values parameters of the index scan, which then starts at
    -- the current event; as a plain join the planner scans the outbox from its start.
    SELECT e.* FROM cur CROSS JOIN LATERAL (
        SELECT o."uuid", o.metadata, o.payload, o.source, o.created_at, o.transaction_id, o."offset", o.ordering_key
          FROM relay.outbox o
         WHERE (o.transaction_id, o."offset") >= (cur.transaction_id, cur."offset")
           AND o.transaction_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY o.transaction_id, o."offset"
         LIMIT $2
    ) e
), room AS (
    SELECT * FROM unnest($5::text[], $6::int[]) AS r(webhook_id, n)
), pairs AS (
    SELECT e."uuid"::uuid AS event_id, w.id AS webhook_id, e.transaction_id, e."offset", room.n AS room,
           CASE WHEN w.ordered THEN relay.event_key(e.metadata ->> 'event', e.payload, e.ordering_key) END AS okey,
           w.replay_fence_tx IS NOT NULL AS fenced
      FROM evs e
      JOIN relay.webhooks w
        ON w.status = 'active'
       AND w.created_at <= e.created_at
       AND relay.event_matches(w.event, e.metadata ->> 'event')
      LEFT JOIN room ON room.webhook_id = w.id
), fresh AS (
    -- A delivery of an ordered key is held when an unfinished one of its key exists,
    -- or comes before it in this batch, or a replay of its webhook runs (the replay's
    -- history of the key goes first; store/replay.go). Pairs of an ordered key that exist already (a
    -- batch read again) are left out, so that they do not count as earlier in the
    -- batch; ON CONFLICT covers the others.
    SELECT p.*,
           CASE WHEN p.okey IS NULL THEN false
                ELSE p.fenced
                     OR row_number() OVER (PARTITION BY p.webhook_id, p.okey ORDER BY p.transaction_id, p."offset") > 1
                     OR EXISTS (SELECT 1 FROM relay.deliveries b
                                 WHERE b.webhook_id = p.webhook_id AND b.ordering_key = p.okey
                                   AND b.status IN ('pending', 'failed')) END AS held
      FROM pairs p
     WHERE p.okey IS NULL
        OR NOT EXISTS (SELECT 1 FROM relay.deliveries x WHERE x.event_id = p.event_id AND x.webhook_id = p.webhook_id)
), leasing AS (
    SELECT f.*,
           NOT f.held
           AND row_number() OVER (PARTITION BY f.webhook_id, f.held ORDER BY f.transaction_id, f."offset") <= coalesce(f.room, $7)
           AND row_number() OVER (PARTITION BY f.held ORDER BY f.transaction_id, f."offset", f.webhook_id) <= $8 AS lease
      FROM fresh f
), ins AS (
    INSERT INTO relay.deliveries (event_id, webhook_id, next_attempt_at, lease_owner, lease_token, lease_expires_at,
                                  ordering_key, event_tx, event_offset)
    SELECT p.event_id, p.webhook_id,
           CASE WHEN NOT p.held THEN now() END,
           CASE WHEN p.lease THEN $3 END,
           CASE WHEN p.lease THEN gen_random_uuid() END,
           CASE WHEN p.lease THEN now() + $4::interval END,
           p.okey,
           CASE WHEN p.okey IS NOT NULL THEN p.transaction_id END,
           CASE WHEN p.okey IS NOT NULL THEN p."offset" END
      FROM leasing p
     ORDER BY p.transaction_id, p."offset", p.webhook_id
    ON CONFLICT (event_id, webhook_id) DO NOTHING
    RETURNING id, lease_token, event_id, webhook_id, attempts, next_attempt_at, ordering_key
), notified AS (
    SELECT pg_notify('relay_deliveries', '')
      FROM (SELECT 1 FROM ins WHERE lease_token IS NULL AND next_attempt_at IS NOT NULL LIMIT 1) AS unleased
)
SELECT id, lease_token, event_id, attempts, next_attempt_at, webhook_id, target_url, secret,
       event, body, created_at, stripe_sign, content_version, ordering_key, covered, held
  FROM (
    SELECT 0 AS part, NULL::xid8 AS tx, NULL::bigint AS off,
           NULL::bigint AS id, NULL::uuid AS lease_token, NULL::uuid AS event_id, 0 AS attempts,
           NULL::timestamptz AS next_attempt_at, NULL::text AS webhook_id, NULL::text AS target_url,
           NULL::text AS secret, NULL::text AS event, NULL::text AS body, NULL::timestamptz AS created_at,
           false AS stripe_sign, ''::text AS content_version, NULL::text AS ordering_key,
           (SELECT array_agg(e."uuid"::text) FROM evs e) AS covered,
           (SELECT array_agg(i.id) FROM ins i WHERE i.next_attempt_at IS NULL) AS held
      FROM (SELECT count(*) FROM notified) AS n
    UNION ALL
    SELECT 1, e.transaction_id, e."offset",
           i.id, i.lease_token, i.event_id, i.attempts, i.next_attempt_at,
           w.id, w.target_url, coalesce(w.secret, ''),
           e.metadata ->> 'event', e.payload::text, e.created_at,
           (e.source = 'stripe' AND w.stripe_signature),
           coalesce(e.metadata ->> 'content_version', ''),
           i.ordering_key,
           NULL, NULL
      FROM ins i
      JOIN relay.webhooks w ON w.id = i.webhook_id
      JOIN evs e ON e."uuid"::uuid = i.event_id
     WHERE i.lease_token IS NOT NULL
  ) AS out
 ORDER BY part, tx, off, webhook_id`

// FanOutRequest is one fan-out: the batch starting at EventID, and how much of it the
// caller may lease for itself (as ClaimRequest's room).
type FanOutRequest struct {
	EventID     string
	Events      int // at most this many events
	Owner       string
	Lease       time.Duration
	Room        map[string]int
	DefaultRoom int
	Limit       int // leases in all
}

// FannedOut is what a FanOut did.
type FannedOut struct {
	// Covered are the events fanned out.
	Covered map[string]struct{}
	// Leased are the deliveries leased to the caller, in commit order.
	Leased []Claimed
	// Held are the deliveries of ordered keys held behind an unfinished one. The caller
	// must pass them to ReleaseNext once FanOut has returned (see ReleaseNext).
	Held []int64
}

// FanOut creates the deliveries of the events of r (see fanoutSQL) in one statement of
// its own, committed when it returns.
func FanOut(ctx context.Context, q Querier, r FanOutRequest) (FannedOut, error) {
	ids := make([]string, 0, len(r.Room))
	room := make([]int32, 0, len(r.Room))
	for id, n := range r.Room {
		ids = append(ids, id)
		room = append(room, int32(max(n, 0)))
	}
	rows, err := q.Query(ctx, fanoutSQL, r.EventID, r.Events, r.Owner, r.Lease, ids, room, r.DefaultRoom, max(r.Limit, 0))
	if err != nil {
		return FannedOut{}, fmt.Errorf("fan out event %s: %w", r.EventID, err)
	}
	first := true
	var events []string
	var held []int64
	leased, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Claimed, error) {
		var c Claimed
		var id *int64
		var token, event, body, target, secret, webhook *string
		var due, committed *time.Time
		var eventID, key *string
		var rowEvents []string // set in the first row only
		var rowHeld []int64    // set in the first row only
		err := row.Scan(&id, &token, &eventID, &c.Attempts, &due, &webhook, &target, &secret,
			&event, &body, &committed, &c.StripeSign, &c.ContentVersion, &key, &rowEvents, &rowHeld)
		if err != nil || first {
			first, events, held = false, rowEvents, rowHeld
			return c, err
		}
		c.ID, c.Token, c.EventID, c.DueAt = *id, *token, *eventID, *due
		c.WebhookID, c.TargetURL, c.Secret, c.Event, c.Body, c.CommittedAt = *webhook, *target, *secret, *event, []byte(*body), *committed
		if key != nil {
			c.OrderingKey = *key
		}
		return c, nil
	})
	if err != nil {
		return FannedOut{}, fmt.Errorf("fan out event %s: %w", r.EventID, err)
	}
	if len(leased) > 0 {
		leased = leased[1:] // the first row is the list of events covered
	}
	covered := make(map[string]struct{}, len(events))
	for _, e := range events {
		covered[e] = struct{}{}
	}
	if _, ok := covered[r.EventID]; !ok {
		return FannedOut{}, fmt.Errorf("fan out event %s: not yet visible", r.EventID)
	}
	return FannedOut{Covered: covered, Leased: leased, Held: held}, nil
}
