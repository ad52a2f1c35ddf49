-- +goose Up
-- +goose StatementBegin

-- Rules that more than one writer applies live here once, so the pipeline, the CLI, the
-- Admin API, maintenance and triggers cannot drift apart.

-- Whether a webhook's event pattern (a name, a trailing wildcard such as post.*, or *)
-- matches an event name. Inlined by the planner (a single-expression SQL function).
CREATE FUNCTION relay.event_matches(pattern text, event text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT pattern = event
        OR pattern = '*'
        OR (right(pattern, 2) = '.*' AND starts_with(event, left(pattern, -1)))
$fn$;

-- Ends a webhook's pending work: every pending delivery but spared (the one whose own
-- attempt caused this, which its result records) becomes cancelled with last_error.
-- Returns how many.
CREATE FUNCTION relay.cancel_pending_deliveries(webhook_id text, last_error text, spared bigint) RETURNS bigint
LANGUAGE sql VOLATILE AS $fn$
    WITH c AS (
        UPDATE relay.deliveries d
           SET status = 'cancelled', next_attempt_at = NULL, last_error = cancel_pending_deliveries.last_error
         WHERE d.webhook_id = cancel_pending_deliveries.webhook_id AND d.status = 'pending'
           AND d.id IS DISTINCT FROM spared
        RETURNING 1
    )
    SELECT count(*) FROM c
$fn$;

-- Disables an active webhook for reason and cancels its pending deliveries; disabled
-- says whether this call did it (so concurrent 410s, or several relays, log and count
-- the change once).
CREATE FUNCTION relay.disable_webhook(webhook_id text, reason text, spared bigint,
                                      OUT disabled boolean, OUT cancelled bigint)
LANGUAGE plpgsql VOLATILE AS $fn$
BEGIN
    UPDATE relay.webhooks w SET status = 'disabled', disabled_reason = reason
     WHERE w.id = webhook_id AND w.status = 'active';
    disabled := FOUND;
    cancelled := 0;
    IF disabled THEN
        cancelled := relay.cancel_pending_deliveries(webhook_id, 'webhook disabled: ' || reason, spared);
    END IF;
END
$fn$;

-- Deleting a webhook keeps its audit trail but ends its pending work.
CREATE OR REPLACE FUNCTION relay.cancel_deliveries_of_deleted_webhook() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM relay.cancel_pending_deliveries(OLD.id, 'webhook deleted', NULL);
    RETURN OLD;
END
$fn$;

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
CREATE OR REPLACE FUNCTION relay.cancel_deliveries_of_deleted_webhook() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE relay.deliveries
       SET status = 'cancelled', last_error = 'webhook deleted', next_attempt_at = NULL
     WHERE webhook_id = OLD.id AND status = 'pending';
    RETURN OLD;
END
$fn$;
DROP FUNCTION relay.disable_webhook(text, text, bigint);
DROP FUNCTION relay.cancel_pending_deliveries(text, text, bigint);
DROP FUNCTION relay.event_matches(text, text);
-- +goose StatementEnd
