-- +goose Up
-- +goose StatementBegin

-- Admin API keys, Ghost's format: the key an operator holds is "id:secret" (24 hex : 64
-- hex), and the hex-decoded secret is the HMAC key of the JWTs signed with it. The
-- server must therefore be able to recover the secret (a hash would not do). It is kept
-- either sealed with AES-256-GCM under RELAY_KEY_ENCRYPTION_KEY (so that a reader of the
-- database alone cannot mint tokens), or, when no key-encryption key is configured, in
-- plaintext as Ghost itself keeps it. Exactly one of the two columns is set.
CREATE TABLE relay.api_keys (
    id              varchar(24) PRIMARY KEY CHECK (id ~ '^[0-9a-f]{24}$'),
    name            varchar(191) NOT NULL DEFAULT '',
    secret_plain    varchar(64) CHECK (secret_plain ~ '^[0-9a-f]{64}$'),
    -- nonce || AES-256-GCM(secret), with the key id as additional data so that a sealed
    -- secret copied onto another row does not open.
    secret_sealed   bytea,
    -- Which key-encryption key sealed it: a relay configured with another one says so
    -- instead of rejecting every token as if it were forged.
    kek_fingerprint varchar(16),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    last_used_at    timestamptz,
    CHECK ((secret_plain IS NULL) <> (secret_sealed IS NULL)),
    CHECK ((secret_sealed IS NULL) = (kek_fingerprint IS NULL))
);

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP TABLE relay.api_keys;
-- +goose StatementEnd
