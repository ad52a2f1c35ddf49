-- +goose Up
-- +goose StatementBegin

-- Ghost sites connected with `relay ghost connect`: an unmodified Ghost sends its own
-- webhooks to the relay's inbound URL (/ghost/in/{site}/{event}), signed with the site's
-- inbound secret, and the relay stores and fans them out. Secrets are sealed under
-- RELAY_KEY_ENCRYPTION_KEY when it is set (as Admin API keys are), else plaintext: the
-- relay needs both back (one signs requests to Ghost, one verifies Ghost's).
CREATE TABLE relay.ghost_sites (
    id                    varchar(24) PRIMARY KEY DEFAULT relay.object_id(),
    -- The site's URL as Ghost's `url` setting has it, without a trailing slash.
    url                   varchar(2000) NOT NULL UNIQUE CHECK (url ~ '^https?://[^/?#]+'),
    -- The relay's base URL as Ghost reaches it.
    relay_url             varchar(2000) NOT NULL CHECK (relay_url ~ '^https?://[^/?#]+'),
    events                text[] NOT NULL,
    admin_key_id          varchar(24) NOT NULL CHECK (admin_key_id ~ '^[0-9a-f]{24}$'),
    admin_secret_plain    varchar(64) CHECK (admin_secret_plain ~ '^[0-9a-f]{64}$'),
    admin_secret_sealed   bytea,
    inbound_secret_plain  varchar(191),
    inbound_secret_sealed bytea,
    kek_fingerprint       varchar(16),
    -- What the site sent last, for `relay ghost status` and the receivers' Content-Version.
    content_version       varchar(16),
    last_received_at      timestamptz,
    last_received_event   varchar(50),
    received_count        bigint NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    CHECK ((admin_secret_plain IS NULL) <> (admin_secret_sealed IS NULL)),
    CHECK ((inbound_secret_plain IS NULL) <> (inbound_secret_sealed IS NULL)),
    CHECK ((admin_secret_sealed IS NULL AND inbound_secret_sealed IS NULL) = (kek_fingerprint IS NULL))
);

-- The webhooks `relay ghost connect` created on each site, so that a second connect edits
-- them instead of adding more, and disconnect deletes exactly these.
CREATE TABLE relay.ghost_site_webhooks (
    site_id          varchar(24) NOT NULL REFERENCES relay.ghost_sites (id) ON DELETE CASCADE,
    event            varchar(50) NOT NULL,
    ghost_webhook_id varchar(24) NOT NULL,
    PRIMARY KEY (site_id, event)
);

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP TABLE relay.ghost_site_webhooks, relay.ghost_sites;
-- +goose StatementEnd
