-- +goose Up
-- +goose StatementBegin

-- Whether p is an event pattern a webhook may subscribe to: a registered name (or
-- stripe.<type>), a trailing wildcard such as post.*, or *. The webhook check and a
-- replay's event filter share it.
CREATE FUNCTION relay.is_event_pattern(p text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT p = '*' OR p ~ '^[a-z0-9_]+(\.[a-z0-9_]+)*\.\*$' OR relay.is_known_event(p)
$fn$;

CREATE OR REPLACE FUNCTION relay.check_webhook() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.event <> lower(NEW.event) THEN
        RAISE EXCEPTION 'webhook event must be lowercase: %', quote_literal(NEW.event) USING ERRCODE = '22023';
    END IF;
    IF NOT relay.is_event_pattern(NEW.event) THEN
        RAISE EXCEPTION 'unknown webhook event %', quote_literal(NEW.event)
            USING ERRCODE = '22023', HINT = 'an event name, a trailing wildcard like post.*, or *';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$fn$;

-- Replays: deliveries created from the kept log for events a webhook matches, including
-- events emitted before the webhook existed (`relay replay`, POST /relay/v1/replays,
-- `relay webhooks add --replay-from`). A replay is a job that the running relays work
-- through in short batches (store.ReplayStep), in commit order, each batch in one
-- transaction with the job's new position: a relay that dies mid-replay loses nothing,
-- and any relay carries on. Batches wait while the replay has many deliveries due, so
-- replayed work never crowds out live work.
CREATE TABLE relay.replays (
    id            bigserial PRIMARY KEY,
    -- No foreign key: the replay's history outlives its webhook, like its deliveries.
    webhook_id    varchar(24) NOT NULL,
    -- The window, by the events' created_at: since <= created_at < until. until is the
    -- time asked for, or the replay's creation: what came later is delivered live.
    since         timestamptz NOT NULL,
    until         timestamptz NOT NULL,
    CHECK (since < until),
    -- Only events with a name this pattern matches (as a webhook's event does); NULL: all
    -- the webhook matches.
    event_pattern varchar(50) CONSTRAINT replays_event_pattern_check CHECK (relay.is_event_pattern(event_pattern)),
    -- Sign Stripe's events with Stripe-Signature (to a webhook marked for it); off by
    -- default, as for a redelivery: Ghost does not deduplicate payment events.
    sign_stripe   boolean NOT NULL DEFAULT false,
    status        text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'done', 'cancelled')),
    -- Where the replay stands in the outbox's commit order: every event at or before it
    -- has been looked at. NULL before the first batch.
    cursor_tx     xid8,
    cursor_offset bigint,
    -- The creating transaction's id: every id below it was given out before, so once
    -- all of those transactions have ended (the snapshot xmin passes it) and the replay
    -- has passed their events, no event of the window can still appear. (A snapshot's
    -- xmax would not do: it is the last completed id + 1, below ids still running.)
    horizon       xid8 NOT NULL DEFAULT pg_current_xact_id(),
    scanned       bigint NOT NULL DEFAULT 0, -- events of the window looked at
    created       bigint NOT NULL DEFAULT 0, -- deliveries created
    existing      bigint NOT NULL DEFAULT 0, -- pairs that had a delivery already
    skipped       bigint NOT NULL DEFAULT 0, -- events of the window the webhook or pattern does not match
    requested_by  text NOT NULL,             -- "cli", or the Admin API key's id
    reason        text,                      -- why it was cancelled
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE INDEX replays_running_idx ON relay.replays (id) WHERE status = 'running';
CREATE INDEX replays_webhook_idx ON relay.replays (webhook_id, id);

-- The replay that created a delivery (NULL: the live fan-out). The partial index counts
-- a replay's due deliveries, which is what its batches wait on; live rows are not in it.
ALTER TABLE relay.deliveries ADD COLUMN replay_id bigint;
CREATE INDEX deliveries_replay_due_idx ON relay.deliveries (replay_id)
    WHERE replay_id IS NOT NULL AND status = 'pending';

-- While a replay of an ordered webhook runs, its deliveries past the replay's position
-- are held: a live event of a post must not go before the post's history the replay has
-- still to create. The fence is the replay's position; NULL when no replay runs.
ALTER TABLE relay.webhooks ADD COLUMN replay_fence_tx xid8, ADD COLUMN replay_fence_offset bigint;

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
ALTER TABLE relay.webhooks DROP COLUMN replay_fence_tx, DROP COLUMN replay_fence_offset;
DROP INDEX relay.deliveries_replay_due_idx;
ALTER TABLE relay.deliveries DROP COLUMN replay_id;
DROP TABLE relay.replays;
CREATE OR REPLACE FUNCTION relay.check_webhook() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    IF NEW.event <> lower(NEW.event) THEN
        RAISE EXCEPTION 'webhook event must be lowercase: %', quote_literal(NEW.event) USING ERRCODE = '22023';
    END IF;
    IF NOT (NEW.event = '*'
            OR (NEW.event ~ '^[a-z0-9_]+(\.[a-z0-9_]+)*\.\*$')
            OR relay.is_known_event(NEW.event)) THEN
        RAISE EXCEPTION 'unknown webhook event %', quote_literal(NEW.event)
            USING ERRCODE = '22023', HINT = 'an event name, a trailing wildcard like post.*, or *';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$fn$;
DROP FUNCTION relay.is_event_pattern(text);
-- +goose StatementEnd
