-- +goose Up
-- +goose StatementBegin

-- Every event records who created it, because what the relay signs depends on it:
--   'emit'    relay.emit (a CMS role, package outbox, `relay emit`)
--   'stripe'  the relay's Stripe endpoint, after verifying Stripe's signature
--   'ghost:<site id>'  a connected Ghost site's webhook, after verifying its signature
-- Only the relay's own role can write anything but 'emit' (relay.emit_internal is not
-- executable by PUBLIC), so a CMS role, or an SQL injection in the CMS, cannot pass an
-- event off as Stripe's.
ALTER TABLE relay.outbox ADD COLUMN source text NOT NULL DEFAULT 'emit'
    CHECK (source IN ('emit', 'stripe') OR source ~ '^ghost:[0-9a-f]{24}$');
UPDATE relay.outbox o SET source = 'stripe'
  FROM relay.stripe_events s WHERE s.event_id = o."uuid"::uuid;

-- stripe.<type> names belong to the Stripe endpoint: nobody may register one.
ALTER TABLE relay.event_types ADD CONSTRAINT event_types_not_stripe CHECK (name !~ '^stripe\.');

-- The one implementation behind every writer. Internal: relay.emit (for CMS roles) and
-- the relay's own endpoints call it; PUBLIC may not, so the source is never the
-- caller's word. data is json, not jsonb: json keeps the caller's text byte for byte.
-- content_version is the Content-Version a Ghost site sent with the event, passed on to
-- receivers.
CREATE FUNCTION relay.emit_internal(event text, data json, source text, content_version text DEFAULT NULL) RETURNS uuid
LANGUAGE plpgsql VOLATILE SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    id uuid := gen_random_uuid();
BEGIN
    IF event IS NULL OR NOT relay.is_known_event(event) THEN
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
    INSERT INTO relay.outbox ("uuid", payload, metadata, transaction_id, source)
    VALUES (id::text, data,
            CASE WHEN content_version IS NULL THEN json_build_object('event', event)
                 ELSE json_build_object('event', event, 'content_version', content_version) END,
            pg_current_xact_id(), source);
    -- Delivered at commit, once per transaction: wakes the relay instead of a poll.
    PERFORM pg_notify('relay_outbox', '');
    RETURN id;
END
$fn$;
REVOKE ALL ON FUNCTION relay.emit_internal(text, json, text, text) FROM PUBLIC;

-- relay.emit(event, data text) keeps the caller's bytes: what the CMS wrote is what
-- every receiver gets (a receiver may verify a signature over its own serialisation of
-- the body). The text must be JSON; anything else is SQLSTATE 22023.
-- A call with an untyped literal, relay.emit('post.added', '{...}'), resolves to this
-- form (PostgreSQL prefers the string category for unknown literals).
CREATE FUNCTION relay.emit(event text, data text) RETURNS uuid
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
    RETURN relay.emit_internal(event, body, 'emit');
END
$fn$;
REVOKE ALL ON FUNCTION relay.emit(text, text) FROM PUBLIC;
-- A role that could emit before may emit after: untyped literals now resolve to the
-- text form, so grant it to every role that holds EXECUTE on the jsonb form.
DO $grant$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT ro.rolname
               FROM pg_proc p, aclexplode(p.proacl) a, pg_roles ro
              WHERE p.oid = 'relay.emit(text, jsonb)'::regprocedure
                AND a.privilege_type = 'EXECUTE' AND a.grantee = ro.oid AND a.grantee <> p.proowner
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION relay.emit(text, text) TO %I', r.rolname);
    END LOOP;
END
$grant$;

-- relay.emit(event, data jsonb) is the first form, kept for callers that pass jsonb:
-- PostgreSQL has already normalised the value (key order, spaces), so receivers get
-- jsonb's text of it.
CREATE OR REPLACE FUNCTION relay.emit(event text, data jsonb) RETURNS uuid
LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    RETURN relay.emit(event, data::text);
END
$fn$;

DROP FUNCTION relay.emit_raw(text, json);

-- A webhook gets a Stripe-Signature (keyed with WEBHOOK_SECRET, the secret Ghost
-- verifies) only when an operator marked it so, for events the Stripe endpoint created.
-- Only a Stripe pattern can be marked: a '*' webhook never gets Stripe's signature.
ALTER TABLE relay.webhooks ADD COLUMN stripe_signature boolean NOT NULL DEFAULT false;
ALTER TABLE relay.webhooks ADD CONSTRAINT webhooks_stripe_signature_pattern
    CHECK (NOT stripe_signature OR event = 'stripe.*' OR event ~ '^stripe\.[a-z0-9_]+(\.[a-z0-9_]+)*$');
-- Existing stripe.* webhooks were signed before this migration: keep them working.
UPDATE relay.webhooks SET stripe_signature = true
 WHERE event = 'stripe.*' OR event ~ '^stripe\.[a-z0-9_]+(\.[a-z0-9_]+)*$';

-- Whether this delivery may carry a Stripe-Signature at all. True from fan-out (retries
-- keep it); a redelivery sets it to what the operator asked for, false unless asked
-- explicitly, so re-sending a payment event to Ghost is never an accident.
ALTER TABLE relay.deliveries ADD COLUMN sign_stripe boolean NOT NULL DEFAULT true;

-- last_triggered_error now holds Ghost's wording ("Request failed: ETIMEDOUT"), for
-- tools that read Ghost's column; the relay's own description of the webhook's last
-- failed attempt, which operators read in `relay status`, moves here.
ALTER TABLE relay.webhooks ADD COLUMN last_attempt_error text;
UPDATE relay.webhooks SET last_attempt_error = last_triggered_error;

-- Where the last request of an attempt went when the receiver redirected it (the
-- relay follows redirects as Ghost does); NULL when there was no redirect.
ALTER TABLE relay.delivery_attempts ADD COLUMN final_url text;

CREATE OR REPLACE VIEW relay.events AS
SELECT o."uuid"::uuid AS id,
       o.metadata ->> 'event' AS event,
       o.payload AS data,
       o.created_at,
       o.transaction_id,
       o."offset",
       o.source
  FROM relay.outbox o;

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
-- Not reversible: the relay never migrates down, and a down migration that re-opened
-- relay.emit to stripe.* names would reopen the hole this one closes.
DO $$ BEGIN RAISE EXCEPTION 'migration 00004_event_source is not reversible'; END $$;
-- +goose StatementEnd
