package store

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// claimSQL leases due deliveries in one short statement: per active webhook at most
// its room ($5/$6, or $3 for a webhook the caller holds nothing of), oldest first,
// skipping rows another relay is claiming right now; then the oldest $2 of those across
// webhooks. Scanning per webhook (LATERAL) is what keeps a receiver with a huge
// backlog or a hang from starving the others.
const claimSQL = `
WITH room AS (
    SELECT * FROM unnest($5::text[], $6::int[]) AS r(webhook_id, n)
), claimable AS (
    SELECT d.id
      FROM relay.webhooks w
      LEFT JOIN room ON room.webhook_id = w.id
     CROSS JOIN LATERAL (
        SELECT d.id, d.next_attempt_at
          FROM relay.deliveries d
         WHERE d.webhook_id = w.id
           AND d.status = 'pending'
           AND d.next_attempt_at <= now()
           AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= now())
         ORDER BY d.next_attempt_at, d.id
         LIMIT greatest(coalesce(room.n, $3::int), 0)
           FOR UPDATE OF d SKIP LOCKED
     ) d
     WHERE w.status = 'active'
     ORDER BY d.next_attempt_at, d.id
     LIMIT $2
), leased AS (
    -- = ANY(ARRAY(...)) rather than a join with the CTE: the planner cannot estimate the
    -- CTE's few rows and would hash-join a sequential scan of every delivery. The webhook
    -- and the event are joined to what the update returns, not in it, so that it finds
    -- its rows by primary key alone: joined in the update, a plan made on statistics
    -- older than a fast-growing backlog intersected the webhook's whole index with them
    -- (110,000 entries, 4 ms of a 9 ms claim, draining 100,000 events).
    UPDATE relay.deliveries d
       SET lease_owner = $1, lease_token = gen_random_uuid(),
           lease_expires_at = now() + $4::interval
     WHERE d.id = ANY(ARRAY(SELECT id FROM claimable))
    RETURNING d.id, d.lease_token, d.event_id, d.attempts, d.next_attempt_at, d.webhook_id, d.sign_stripe, d.ordering_key
)
SELECT l.id, l.lease_token, l.event_id, l.attempts, l.next_attempt_at,
       w.id, w.target_url, coalesce(w.secret, ''),
       o.metadata ->> 'event', o.payload::text, o.created_at,
       -- Stripe's signature only for what the Stripe endpoint created, only to a
       -- webhook an operator marked, and not on a redelivery unless asked for.
       (o.source = 'stripe' AND w.stripe_signature AND l.sign_stripe),
       coalesce(o.metadata ->> 'content_version', ''), coalesce(l.ordering_key, '')
  FROM leased l
  JOIN relay.webhooks w ON w.id = l.webhook_id
  JOIN relay.outbox o ON o."uuid"::uuid = l.event_id`

// Lease identifies one claimed delivery: the token fences every write of its result.
type Lease struct {
	ID    int64
	Token string
}

// Claimed is a leased delivery with everything its attempt needs.
type Claimed struct {
	Lease
	EventID     string
	Attempts    int // attempts made before this one
	DueAt       time.Time
	WebhookID   string
	TargetURL   string
	Secret      string
	Event       string
	Body        []byte
	CommittedAt time.Time
	// StripeSign says the attempt carries a Stripe-Signature (see claimSQL).
	StripeSign bool
	// ContentVersion is the Content-Version the event's Ghost site sent; empty for
	// events from elsewhere.
	ContentVersion string
	// OrderingKey is set for a delivery of an ordered webhook's key: its result must
	// let the key's next delivery go (see Record).
	OrderingKey string
}

// ClaimRequest says how much a claim may take.
type ClaimRequest struct {
	Owner string
	// Limit bounds the whole claim; Room the deliveries taken per webhook, by webhook
	// id, and DefaultRoom for a webhook not in Room.
	Limit       int
	Room        map[string]int
	DefaultRoom int
	Lease       time.Duration
}

// Claim leases due deliveries for r.Owner and returns them oldest due first (first
// attempts in commit order per webhook).
func Claim(ctx context.Context, q Querier, r ClaimRequest) ([]Claimed, error) {
	ids := make([]string, 0, len(r.Room))
	room := make([]int32, 0, len(r.Room))
	for id, n := range r.Room {
		ids = append(ids, id)
		room = append(room, int32(max(n, 0)))
	}
	rows, err := q.Query(ctx, claimSQL, r.Owner, r.Limit, r.DefaultRoom, r.Lease, ids, room)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Claimed, error) {
		var c Claimed
		var body string
		err := row.Scan(&c.ID, &c.Token, &c.EventID, &c.Attempts, &c.DueAt,
			&c.WebhookID, &c.TargetURL, &c.Secret, &c.Event, &body, &c.CommittedAt, &c.StripeSign, &c.ContentVersion, &c.OrderingKey)
		c.Body = []byte(body)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	// UPDATE ... RETURNING does not keep the CTE's order, nor does the join after it.
	slices.SortFunc(batch, func(a, b Claimed) int {
		if c := a.DueAt.Compare(b.DueAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return batch, nil
}

// releaseSQL hands back leases so that another relay takes the deliveries at once
// instead of when the lease would have run out: the given ones ($2, $3), or every one
// owner holds ($2 NULL). The claimers are notified when it released any.
const releaseSQL = `
WITH released AS (
    UPDATE relay.deliveries SET lease_owner = NULL, lease_token = NULL, lease_expires_at = NULL
     WHERE status = 'pending' AND lease_owner = $1
       AND ($2::bigint[] IS NULL OR (id = ANY($2::bigint[]) AND lease_token = ANY($3::uuid[])))
    RETURNING 1
), notified AS (
    SELECT pg_notify('relay_deliveries', '') FROM (SELECT 1 FROM released LIMIT 1) AS first_one
)
SELECT (SELECT count(*) FROM released), (SELECT count(*) FROM notified)`

// Release hands back the leases of owner in leases, or all of owner's when leases is
// nil, and returns how many it released.
func Release(ctx context.Context, q Querier, owner string, leases []Lease) (int64, error) {
	var ids []int64
	var tokens []string
	if leases != nil {
		ids, tokens = make([]int64, len(leases)), make([]string, len(leases))
		for i, l := range leases {
			ids[i], tokens[i] = l.ID, l.Token
		}
	}
	var released, notified int64
	if err := q.QueryRow(ctx, releaseSQL, owner, ids, tokens).Scan(&released, &notified); err != nil {
		return 0, fmt.Errorf("release leases: %w", err)
	}
	return released, nil
}

// stillWantedSQL checks a delivery that waited in a relay's queue: the webhook may have
// been disabled or deleted, or the delivery cancelled, since it was claimed.
const stillWantedSQL = `
SELECT EXISTS (SELECT 1 FROM relay.deliveries d JOIN relay.webhooks w ON w.id = d.webhook_id
                WHERE d.id = $1 AND d.lease_token = $2 AND d.status = 'pending' AND w.status = 'active')`

// StillWanted reports whether the leased delivery is still pending, still leased by
// this lease, and its webhook still active.
func StillWanted(ctx context.Context, q Querier, l Lease) (bool, error) {
	var ok bool
	if err := q.QueryRow(ctx, stillWantedSQL, l.ID, l.Token).Scan(&ok); err != nil {
		return false, fmt.Errorf("check delivery %d: %w", l.ID, err)
	}
	return ok, nil
}
