-- +goose Up
-- +goose StatementBegin

-- Order per aggregate. A webhook may be ordered: its deliveries with the same ordering
-- key (the post, page, tag or member an event is about) go one at a time, in the order
-- the relay reads events, and a delivery that fails holds back only the later ones of
-- its key.

-- The key a CMS gave at emit (relay.emit(event, data, key), outbox.Event.Key); NULL
-- when it gave none, and then relay.event_key derives one.
ALTER TABLE relay.outbox ADD COLUMN ordering_key text;

-- An event's ordering key: the one given at emit, else, for Ghost-shaped data
-- ({"post": {"current": {...}, "previous": {...}}}), the id of the resource the event
-- name starts with (data.post.current.id, else data.post.previous.id, as a deleted
-- post has no current), else NULL: unordered. A derived key longer than 200 characters
-- (hostile data) stands in as its SHA-256, so that it always fits an index entry.
CREATE FUNCTION relay.event_key(event text, data json, ordering_key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN length(k) <= 200 THEN k ELSE 'sha256:' || encode(sha256(convert_to(k, 'UTF8')), 'hex') END
      FROM (SELECT coalesce(ordering_key,
                            nullif(data -> split_part(event, '.', 1) -> 'current' ->> 'id', ''),
                            nullif(data -> split_part(event, '.', 1) -> 'previous' ->> 'id', '')) AS k) AS s
$fn$;

CREATE OR REPLACE VIEW relay.events AS
SELECT o."uuid"::uuid AS id,
       o.metadata ->> 'event' AS event,
       o.payload AS data,
       o.created_at,
       o.transaction_id,
       o."offset",
       o.source,
       relay.event_key(o.metadata ->> 'event', o.payload, o.ordering_key) AS key
  FROM relay.outbox o;

-- emit_internal gains the key; callers without one are unchanged (it defaults to NULL).
DROP FUNCTION relay.emit_internal(text, json, text, text);
CREATE FUNCTION relay.emit_internal(event text, data json, source text, content_version text DEFAULT NULL,
                                    ordering_key text DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    -- UUIDv7 (see relay.uuid_v7), inline: a SQL function is planned again on every
    -- call from PL/pgSQL.
    id uuid := encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid())
                  PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                  FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid;
    now_ms float8;
    notified text;
BEGIN
    -- relay.is_known_event's rule, inline: a registered name, or stripe.<type>.
    IF event IS NULL OR NOT (EXISTS (SELECT 1 FROM relay.event_types t WHERE t.name = event)
                             OR (event ~ '^stripe\.[a-z0-9_]+(\.[a-z0-9_]+)*$' AND length(event) <= 50)) THEN
        RAISE EXCEPTION 'relay.emit: unknown event %', coalesce(quote_literal(event), 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'use one of relay.event_types, or register it with: relay events register NAME';
    END IF;
    IF data IS NULL THEN
        RAISE EXCEPTION 'relay.emit: data must be a JSON value, not SQL NULL (use ''{}'')'
            USING ERRCODE = '22023';
    END IF;
    IF octet_length(data::text) > relay.max_payload_bytes() THEN
        RAISE EXCEPTION 'relay.emit: data is % bytes, over the limit of % bytes',
            octet_length(data::text), relay.max_payload_bytes()
            USING ERRCODE = '54000';
    END IF;
    IF ordering_key IS NOT NULL AND (length(ordering_key) NOT BETWEEN 1 AND 200) THEN
        RAISE EXCEPTION 'relay.emit: an ordering key must be 1 to 200 characters, or NULL for the derived one'
            USING ERRCODE = '22023';
    END IF;
    INSERT INTO relay.outbox ("uuid", payload, metadata, transaction_id, source, ordering_key)
    VALUES (id::text, data,
            CASE WHEN content_version IS NULL THEN json_build_object('event', event)
                 ELSE json_build_object('event', event, 'content_version', content_version) END,
            pg_current_xact_id(), source, emit_internal.ordering_key);
    -- Wake the relays at commit, but at most once every 50 ms per connection (see
    -- 00008_writer_cost).
    now_ms := extract(epoch FROM clock_timestamp()) * 1000;
    notified := current_setting('relay.notified_at', true);
    IF notified IS NULL OR notified = '' OR now_ms - notified::float8 >= 50 OR now_ms < notified::float8 THEN
        PERFORM pg_notify('relay_outbox', '');
        PERFORM set_config('relay.notified_at', now_ms::text, false);
    END IF;
    RETURN id;
END
$fn$;
REVOKE ALL ON FUNCTION relay.emit_internal(text, json, text, text, text) FROM PUBLIC;

-- relay.emit(event, data[, key]) replaces relay.emit(event, data): the roles that could
-- call the old forms may call the new ones.
CREATE TEMP TABLE emit_grantees ON COMMIT DROP AS
SELECT DISTINCT p.oid = 'relay.emit(text, text)'::regprocedure AS text_form, ro.rolname
  FROM pg_proc p, aclexplode(p.proacl) a, pg_roles ro
 WHERE p.oid IN ('relay.emit(text, text)'::regprocedure, 'relay.emit(text, jsonb)'::regprocedure)
   AND a.privilege_type = 'EXECUTE' AND a.grantee = ro.oid AND a.grantee <> p.proowner;

DROP FUNCTION relay.emit(text, jsonb);
DROP FUNCTION relay.emit(text, text);

-- The text form keeps the caller's bytes (see 00004_event_source). A call with untyped
-- literals, relay.emit('post.added', '{...}'), resolves to it.
CREATE FUNCTION relay.emit(event text, data text, ordering_key text DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    body json;
BEGIN
    IF starts_with(event, 'stripe.') THEN
        RAISE EXCEPTION 'relay.emit: % is a Stripe event name; only the relay''s Stripe endpoint creates stripe.* events', quote_literal(event)
            USING ERRCODE = '22023',
                  HINT = 'point Stripe at the relay''s /members/webhooks/stripe/ endpoint';
    END IF;
    IF octet_length(data) > relay.max_payload_bytes() THEN
        RAISE EXCEPTION 'relay.emit: data is % bytes, over the limit of % bytes',
            octet_length(data), relay.max_payload_bytes()
            USING ERRCODE = '54000';
    END IF;
    BEGIN
        body := data::json;
    EXCEPTION WHEN invalid_text_representation THEN
        RAISE EXCEPTION 'relay.emit: data is not valid JSON'
            USING ERRCODE = '22023', DETAIL = SQLERRM;
    END;
    RETURN relay.emit_internal(event, body, 'emit', NULL, ordering_key);
END
$fn$;
REVOKE ALL ON FUNCTION relay.emit(text, text, text) FROM PUBLIC;

-- The jsonb form: PostgreSQL has already normalised the value, so receivers get jsonb's
-- text of it.
CREATE FUNCTION relay.emit(event text, data jsonb, ordering_key text DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    RETURN relay.emit(event, data::text, ordering_key);
END
$fn$;
REVOKE ALL ON FUNCTION relay.emit(text, jsonb, text) FROM PUBLIC;

DO $grant$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT * FROM emit_grantees LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO %I',
                       CASE WHEN r.text_form THEN 'relay.emit(text, text, text)'
                            ELSE 'relay.emit(text, jsonb, text)' END,
                       r.rolname);
    END LOOP;
END
$grant$;

ALTER TABLE relay.webhooks ADD COLUMN ordered boolean NOT NULL DEFAULT false;

-- An ordered webhook's deliveries carry their event's key and place in the read order
-- (transaction_id, offset); NULL for every other delivery.
ALTER TABLE relay.deliveries
    ADD COLUMN ordering_key text,
    ADD COLUMN event_tx xid8,
    ADD COLUMN event_offset bigint;

-- skipped: a failed delivery of an ordered key that an operator chose to pass over, so
-- that the key's later deliveries go (relay deliveries skip).
ALTER TABLE relay.deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE relay.deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled', 'skipped'));

-- A delivery of a key is held while an earlier one of the key is unfinished: it is
-- pending with no next_attempt_at, so no claim takes it, until the one before it
-- succeeds or is skipped and the relay that recorded that sets it due. A failed one is
-- unfinished: it holds its key until redelivered or skipped.
-- The unfinished deliveries of each key, in read order:
CREATE INDEX deliveries_key_idx ON relay.deliveries (webhook_id, ordering_key, event_tx, event_offset)
    WHERE ordering_key IS NOT NULL AND status IN ('pending', 'failed');
-- and the one of each key that is not held (in flight, waiting for a retry, or failed):
CREATE INDEX deliveries_key_active_idx ON relay.deliveries (webhook_id, ordering_key)
    WHERE ordering_key IS NOT NULL AND (status = 'failed' OR (status = 'pending' AND next_attempt_at IS NOT NULL));

-- The advisory lock of one webhook's key. The fan-out and whoever records a result of
-- the key take it, always in ascending order of its value, before touching the key's
-- rows: they then wait for each other rather than deadlock on those rows.
CREATE FUNCTION relay.key_lock(webhook_id text, ordering_key text) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT hashtextextended(webhook_id || '/' || ordering_key, 15)
$fn$;

-- A webhook that stops being ordered lets its held deliveries go.
CREATE FUNCTION relay.release_unordered() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE relay.deliveries SET next_attempt_at = now()
     WHERE webhook_id = NEW.id AND status = 'pending' AND next_attempt_at IS NULL;
    IF FOUND THEN
        PERFORM pg_notify('relay_deliveries', '');
    END IF;
    RETURN NEW;
END
$fn$;
CREATE TRIGGER webhooks_release_unordered AFTER UPDATE OF ordered ON relay.webhooks
    FOR EACH ROW WHEN (OLD.ordered AND NOT NEW.ordered) EXECUTE FUNCTION relay.release_unordered();

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DO $$ BEGIN RAISE EXCEPTION 'migration 00011_ordering is not reversible'; END $$;
-- +goose StatementEnd
