-- +goose Up
-- +goose StatementBegin

-- Event names the relay accepts. The 29 Ghost events are preloaded; operators add
-- their own with `relay events register NAME`. stripe.<type> names need no row.
CREATE TABLE relay.event_types (
    name       varchar(50) PRIMARY KEY
               CHECK (name ~ '^[a-z0-9_]+(\.[a-z0-9_]+)*$'),
    source     text NOT NULL DEFAULT 'custom' CHECK (source IN ('ghost', 'custom')),
    created_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO relay.event_types (name, source)
SELECT n, 'ghost' FROM unnest(ARRAY[
    'site.changed',
    'post.added', 'post.deleted', 'post.edited', 'post.published', 'post.published.edited',
    'post.unpublished', 'post.scheduled', 'post.unscheduled', 'post.rescheduled',
    'page.added', 'page.deleted', 'page.edited', 'page.published', 'page.published.edited',
    'page.unpublished', 'page.scheduled', 'page.unscheduled', 'page.rescheduled',
    'tag.added', 'tag.edited', 'tag.deleted',
    'post.tag.attached', 'post.tag.detached', 'page.tag.attached', 'page.tag.detached',
    'member.added', 'member.edited', 'member.deleted'
]) AS n;

CREATE FUNCTION relay.is_known_event(name text) RETURNS boolean
LANGUAGE sql STABLE AS $fn$
    SELECT name ~ '^stripe\.[a-z0-9_]+(\.[a-z0-9_]+)*$' AND length(name) <= 50
        OR EXISTS (SELECT 1 FROM relay.event_types t WHERE t.name = is_known_event.name)
$fn$;

-- The outbox is a watermill-sql topic table (DefaultPostgreSQLSchema layout, renamed):
-- the relay's subscriber reads it with consumer group "relay". created_at is timestamptz
-- rather than watermill's TIMESTAMP because auditors read it; watermill never selects it.
CREATE TABLE relay.outbox (
    "offset"         bigserial,
    "uuid"           varchar(36) NOT NULL,
    "created_at"     timestamptz NOT NULL DEFAULT now(),
    "payload"        json DEFAULT NULL,
    "metadata"       json DEFAULT NULL,
    "transaction_id" xid8 NOT NULL,
    PRIMARY KEY ("transaction_id", "offset")
);
-- Event ids are looked up as uuid (deliveries.event_id, relay.events.id): one unique
-- index on that expression serves every lookup and join.
CREATE UNIQUE INDEX outbox_event_id_key ON relay.outbox ((("uuid")::uuid));
CREATE INDEX outbox_created_at_idx ON relay.outbox (created_at);

CREATE TABLE relay.outbox_offsets (
    consumer_group                varchar(255) NOT NULL PRIMARY KEY,
    offset_acked                  bigint,
    last_processed_transaction_id xid8 NOT NULL
);

-- Largest accepted event body, in bytes of its JSON text.
CREATE FUNCTION relay.max_payload_bytes() RETURNS integer
LANGUAGE sql IMMUTABLE AS $fn$ SELECT 1048576 $fn$;

-- relay.emit writes one event inside the caller's transaction. It is the whole
-- writer-side API: rolled back => never delivered, committed => delivered.
-- SECURITY DEFINER: a CMS's role needs EXECUTE on this function (and USAGE on the
-- schema), not rights on the tables behind it; search_path is pinned so the caller
-- cannot redirect what it resolves. EXECUTE is revoked from PUBLIC below.
CREATE FUNCTION relay.emit(event text, data jsonb) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    id uuid := gen_random_uuid();
    body text;
BEGIN
    IF event IS NULL OR NOT relay.is_known_event(event) THEN
        RAISE EXCEPTION 'relay.emit: unknown event %', coalesce(quote_literal(event), 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'use one of relay.event_types, stripe.<type>, or register it with: relay events register NAME';
    END IF;
    IF data IS NULL THEN
        RAISE EXCEPTION 'relay.emit: data must be a JSON value, not SQL NULL (use ''{}''::jsonb)'
            USING ERRCODE = '22023';
    END IF;
    body := data::text;
    IF octet_length(body) > relay.max_payload_bytes() THEN
        RAISE EXCEPTION 'relay.emit: data is % bytes, over the limit of % bytes',
            octet_length(body), relay.max_payload_bytes()
            USING ERRCODE = '54000';
    END IF;
    INSERT INTO relay.outbox ("uuid", payload, metadata, transaction_id)
    VALUES (id::text, body::json, json_build_object('event', event), pg_current_xact_id());
    -- Delivered at commit, once per transaction: wakes the relay instead of a poll.
    PERFORM pg_notify('relay_outbox', '');
    RETURN id;
END
$fn$;
REVOKE ALL ON FUNCTION relay.emit(text, jsonb) FROM PUBLIC;

-- Ghost's webhook ids are 24-hex ObjectIds: 4 bytes of seconds, then randomness.
CREATE FUNCTION relay.object_id() RETURNS varchar(24)
LANGUAGE sql VOLATILE AS $fn$
    SELECT lpad(to_hex(extract(epoch FROM clock_timestamp())::bigint), 8, '0')
        || substr(replace(gen_random_uuid()::text, '-', ''), 1, 16)
$fn$;

CREATE TABLE relay.webhooks (
    id                    varchar(24) PRIMARY KEY DEFAULT relay.object_id(),
    event                 varchar(50) NOT NULL,
    target_url            varchar(2000) NOT NULL CHECK (target_url ~* '^https?://[^/?#]+'),
    name                  varchar(191),
    secret                varchar(191),
    api_version           varchar(50) NOT NULL DEFAULT 'v5',
    integration_id        varchar(24),
    status                text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    disabled_reason       text,
    last_triggered_at     timestamptz,
    last_triggered_status varchar(50),
    last_triggered_error  text,
    last_success_at       timestamptz,
    -- Start of the current run of failures (no 2xx since); NULL while healthy.
    failing_since         timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX webhooks_event_target_key ON relay.webhooks (lower(event), lower(target_url));

CREATE FUNCTION relay.check_webhook() RETURNS trigger
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
CREATE TRIGGER webhooks_check BEFORE INSERT OR UPDATE OF event, target_url, name, secret, status
    ON relay.webhooks FOR EACH ROW EXECUTE FUNCTION relay.check_webhook();

-- One row per (event, webhook), created at fan-out; the unique key is what makes
-- "exactly one delivery" hold when the fan-out of a batch is replayed.
CREATE TABLE relay.deliveries (
    id               bigserial PRIMARY KEY,
    event_id         uuid NOT NULL,
    webhook_id       varchar(24) NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    lease_owner      text,
    lease_token      uuid,
    lease_expires_at timestamptz,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz,
    UNIQUE (event_id, webhook_id)
) WITH (fillfactor = 80); -- room on each page for HOT updates: a claim changes no indexed column
CREATE INDEX deliveries_due_idx ON relay.deliveries (webhook_id, next_attempt_at, id)
    WHERE status = 'pending';
CREATE INDEX deliveries_webhook_idx ON relay.deliveries (webhook_id, created_at);
-- Failed deliveries are what operators look for; a partial index keeps the hot path
-- (every status change) from maintaining an index over all of them.
CREATE INDEX deliveries_failed_idx ON relay.deliveries (created_at) WHERE status = 'failed';

CREATE TABLE relay.delivery_attempts (
    delivery_id      bigint NOT NULL REFERENCES relay.deliveries (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    started_at       timestamptz NOT NULL,
    duration_ms      integer NOT NULL,
    status_code      integer,
    error            text,
    response_excerpt text,
    -- Which relay made the attempt (RELAY_INSTANCE_ID, or host-pid-random).
    relay_instance   text,
    PRIMARY KEY (delivery_id, attempt)
);

-- Deleting a webhook keeps its audit trail but ends its pending work.
CREATE FUNCTION relay.cancel_deliveries_of_deleted_webhook() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE relay.deliveries
       SET status = 'cancelled', last_error = 'webhook deleted', next_attempt_at = NULL
     WHERE webhook_id = OLD.id AND status = 'pending';
    RETURN OLD;
END
$fn$;
CREATE TRIGGER webhooks_cancel_on_delete AFTER DELETE ON relay.webhooks
    FOR EACH ROW EXECUTE FUNCTION relay.cancel_deliveries_of_deleted_webhook();

-- Every committed event. The relay reads them in (transaction_id, "offset") order,
-- which is what "commit order" means here.
CREATE VIEW relay.events AS
SELECT o."uuid"::uuid AS id,
       o.metadata ->> 'event' AS event,
       o.payload AS data,
       o.created_at,
       o.transaction_id,
       o."offset"
  FROM relay.outbox o;

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP VIEW relay.events;
DROP TABLE relay.delivery_attempts, relay.deliveries, relay.webhooks,
    relay.outbox_offsets, relay.outbox, relay.event_types;
DROP FUNCTION relay.cancel_deliveries_of_deleted_webhook(), relay.check_webhook(),
    relay.object_id(), relay.emit(text, jsonb), relay.max_payload_bytes(),
    relay.is_known_event(text);
-- +goose StatementEnd
