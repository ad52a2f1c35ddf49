-- +goose Up
-- +goose StatementBegin

-- The operator console (/ui/). Who may sign in: the holder of an Admin API key whose
-- integration is of type 'console' (`relay keys create --console`). Such an integration
-- owns no webhooks and its keys are refused by the Admin and audit APIs; a custom
-- integration's key, scoped to its own webhooks there, cannot sign in, so it never
-- gains the console's operator powers.
ALTER TABLE relay.integrations DROP CONSTRAINT integrations_type_check;
ALTER TABLE relay.integrations ADD CONSTRAINT integrations_type_check CHECK (type IN ('custom', 'console'));

-- Console sessions. Only a SHA-256 of the session token is stored: a reader of the
-- database cannot take over a session. A session lasts until expires_at (set at sign-in)
-- or sign-out, and is honoured only while its key is not revoked (checked on every
-- request by joining relay.api_keys).
CREATE TABLE relay.console_sessions (
    token_hash bytea PRIMARY KEY CHECK (octet_length(token_hash) = 32),
    key_id     varchar(24) NOT NULL REFERENCES relay.api_keys (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL
);
CREATE INDEX console_sessions_expires_at_idx ON relay.console_sessions (expires_at);
CREATE INDEX console_sessions_key_id_idx ON relay.console_sessions (key_id);

-- Every change made in the console, written in the transaction of the change: who (the
-- key and its name at the time), what, when, and on what. webhook_id is kept without a
-- foreign key, so a deleted webhook's history stays.
CREATE TABLE relay.console_changes (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    key_id      varchar(24) NOT NULL,
    key_name    text NOT NULL,
    action      text NOT NULL,
    webhook_id  varchar(24),
    delivery_id bigint,
    event_id    uuid,
    detail      text NOT NULL DEFAULT ''
);
CREATE INDEX console_changes_webhook_idx ON relay.console_changes (webhook_id, id) WHERE webhook_id IS NOT NULL;

-- Failed deliveries per webhook: the console counts them for every webhook on each
-- page, and `relay redeliver --webhook --since` selects them. Same predicate as before,
-- so the hot path maintains the same entries (only deliveries that fail for good);
-- webhook_id first turns the per-webhook count into an index-only scan.
DROP INDEX relay.deliveries_failed_idx;
CREATE INDEX deliveries_failed_idx ON relay.deliveries (webhook_id, created_at) WHERE status = 'failed';

-- relay.webhook_minutes rolled up per hour, for the console's 24-hour figures: a day is
-- 24 rows per webhook instead of 1,440. Maintenance (every relay, once a minute) rolls
-- up complete hours and recomputes the last three, so an attempt recorded late still
-- counts; rolled_until says up to where the hours are complete, and readers take
-- minutes after it.
CREATE TABLE relay.webhook_hours (
    webhook_id varchar(24) NOT NULL,
    hour       timestamptz NOT NULL,
    attempts   integer NOT NULL,
    succeeded  integer NOT NULL,
    retried    integer NOT NULL,
    failed     integer NOT NULL,
    -- The buckets of relay.webhook_minutes, summed.
    d1 integer NOT NULL, d2 integer NOT NULL, d3 integer NOT NULL, d4 integer NOT NULL, d5 integer NOT NULL,
    d6 integer NOT NULL, d7 integer NOT NULL, d8 integer NOT NULL, d9 integer NOT NULL, d10 integer NOT NULL,
    l1 integer NOT NULL, l2 integer NOT NULL, l3 integer NOT NULL, l4 integer NOT NULL, l5 integer NOT NULL,
    l6 integer NOT NULL, l7 integer NOT NULL, l8 integer NOT NULL, l9 integer NOT NULL, l10 integer NOT NULL,
    PRIMARY KEY (webhook_id, hour)
);
CREATE INDEX webhook_hours_hour_idx ON relay.webhook_hours (hour);

CREATE TABLE relay.webhook_hours_rolled (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    rolled_until timestamptz NOT NULL
);

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP TABLE relay.webhook_hours_rolled, relay.webhook_hours;
DROP INDEX relay.deliveries_failed_idx;
CREATE INDEX deliveries_failed_idx ON relay.deliveries (created_at) WHERE status = 'failed';
DROP TABLE relay.console_changes, relay.console_sessions;
DELETE FROM relay.integrations WHERE type = 'console';
ALTER TABLE relay.integrations DROP CONSTRAINT integrations_type_check;
ALTER TABLE relay.integrations ADD CONSTRAINT integrations_type_check CHECK (type = 'custom');
-- +goose StatementEnd
