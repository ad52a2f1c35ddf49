-- +goose Up
-- +goose StatementBegin

-- relay.emit_raw is relay.emit for callers that must deliver the exact bytes they
-- received. relay.emit takes jsonb, which reorders keys, drops duplicate keys and
-- rewrites whitespace and numbers; the outbox payload column is json, which keeps text
-- verbatim, so going through json preserves the body byte for byte. The Stripe endpoint
-- uses it so that what a stripe.* receiver gets is exactly what Stripe sent.
-- Internal: CMS code calls relay.emit. Keep its checks in step with relay.emit.
-- (A separate name, not an overload: relay.emit(text, json) next to relay.emit(text,
-- jsonb) would make every relay.emit('x', '{...}') call with a literal ambiguous.)
CREATE FUNCTION relay.emit_raw(event text, data json) RETURNS uuid
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    id uuid := gen_random_uuid();
BEGIN
    IF event IS NULL OR NOT relay.is_known_event(event) THEN
        RAISE EXCEPTION 'relay.emit_raw: unknown event %', coalesce(quote_literal(event), 'NULL')
            USING ERRCODE = '22023',
                  HINT = 'use one of relay.event_types, stripe.<type>, or register it with: relay events register NAME';
    END IF;
    IF data IS NULL THEN
        RAISE EXCEPTION 'relay.emit_raw: data must be a JSON value, not SQL NULL'
            USING ERRCODE = '22023';
    END IF;
    IF octet_length(data::text) > relay.max_payload_bytes() THEN
        RAISE EXCEPTION 'relay.emit_raw: data is % bytes, over the limit of % bytes',
            octet_length(data::text), relay.max_payload_bytes()
            USING ERRCODE = '54000';
    END IF;
    INSERT INTO relay.outbox ("uuid", payload, metadata, transaction_id)
    VALUES (id::text, data, json_build_object('event', event), pg_current_xact_id());
    PERFORM pg_notify('relay_outbox', '');
    RETURN id;
END
$fn$;

-- Every verified Stripe event, once per Stripe event id: the primary key is what turns
-- Stripe's redeliveries (and concurrent duplicates) into no-ops. raw is the body exactly
-- as Stripe signed it (json keeps text verbatim), for audit and replay.
CREATE TABLE relay.stripe_events (
    id                text PRIMARY KEY CHECK (id <> '' AND length(id) <= 255),
    type              text NOT NULL CHECK (type ~ '^[a-z0-9_]+(\.[a-z0-9_]+)*$' AND length(type) <= 255),
    livemode          boolean NOT NULL,
    api_version       text,
    stripe_created_at timestamptz,
    received_at       timestamptz NOT NULL DEFAULT now(),
    -- The outbox event (relay.events.id, the webhook-id receivers see). NULL when the
    -- event was stored but not emitted: 'stripe.' || type is longer than the 50
    -- characters an event name may have.
    event_id          uuid,
    raw               json NOT NULL
);
CREATE UNIQUE INDEX stripe_events_event_id_key ON relay.stripe_events (event_id);
CREATE INDEX stripe_events_received_at_idx ON relay.stripe_events (received_at);

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP TABLE relay.stripe_events;
DROP FUNCTION relay.emit_raw(text, json);
-- +goose StatementEnd
