-- +goose Up
-- +goose StatementBegin

-- Integrations, as in Ghost: an Admin API key belongs to an integration, and a webhook
-- created with a key belongs to the key's integration. Only that integration may edit or
-- delete it through the Admin API; a webhook with no integration (made by `relay webhooks
-- add`) is the operator's and is managed with the CLI alone. Ghost's `type` is kept for
-- the shape of its model; the relay makes only custom integrations (`relay keys create`).
CREATE TABLE relay.integrations (
    id         varchar(24) PRIMARY KEY DEFAULT relay.object_id(),
    type       varchar(50) NOT NULL DEFAULT 'custom' CHECK (type = 'custom'),
    name       varchar(191) NOT NULL CHECK (name <> ''),
    slug       varchar(191) NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Every existing key gets an integration of its own (named after the key), so that each
-- keeps working and keeps exactly the webhooks it could reach before. relay.object_id()
-- is volatile: one new id per row.
ALTER TABLE relay.api_keys ADD COLUMN integration_id varchar(24);
UPDATE relay.api_keys SET integration_id = relay.object_id();
INSERT INTO relay.integrations (id, name, slug, created_at, updated_at)
SELECT k.integration_id,
       coalesce(nullif(k.name, ''), 'Custom integration'),
       -- Ghost-style slug of the name; a name seen before gets the key id appended,
       -- which cannot collide.
       CASE WHEN row_number() OVER (PARTITION BY s.base ORDER BY k.created_at, k.id) = 1 THEN s.base
            ELSE s.base || '-' || k.id END,
       k.created_at, k.created_at
  FROM relay.api_keys k,
       LATERAL (SELECT coalesce(nullif(left(trim(BOTH '-' FROM regexp_replace(lower(k.name), '[^a-z0-9]+', '-', 'g')), 160), ''),
                                'custom-integration') AS base) s;
ALTER TABLE relay.api_keys
    ALTER COLUMN integration_id SET NOT NULL,
    ADD CONSTRAINT api_keys_integration_fk FOREIGN KEY (integration_id)
        REFERENCES relay.integrations (id) ON DELETE CASCADE;
CREATE INDEX api_keys_integration_idx ON relay.api_keys (integration_id);

-- Until now a webhook made through the Admin API recorded the id of the key that made
-- it as its integration_id; point those at the key's new integration. Any other value
-- came from a request body and names no integration (no key can act as it), so it is
-- cleared: such webhooks become the operator's.
UPDATE relay.webhooks w SET integration_id = k.integration_id
  FROM relay.api_keys k WHERE w.integration_id = k.id;
UPDATE relay.webhooks SET integration_id = NULL
 WHERE integration_id IS NOT NULL
   AND integration_id NOT IN (SELECT id FROM relay.integrations);
-- Deleting an integration (by SQL; the relay itself only revokes) deletes its webhooks,
-- as in Ghost; the trigger on relay.webhooks then cancels their pending deliveries and
-- keeps their audit trail.
ALTER TABLE relay.webhooks
    ADD CONSTRAINT webhooks_integration_fk FOREIGN KEY (integration_id)
        REFERENCES relay.integrations (id) ON DELETE CASCADE;
CREATE INDEX webhooks_integration_idx ON relay.webhooks (integration_id);

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
ALTER TABLE relay.webhooks DROP CONSTRAINT webhooks_integration_fk;
DROP INDEX relay.webhooks_integration_idx;
-- Back to "the key plays the integration": the (first) key of each integration.
UPDATE relay.webhooks w SET integration_id = (
    SELECT k.id FROM relay.api_keys k WHERE k.integration_id = w.integration_id
     ORDER BY k.created_at, k.id LIMIT 1)
 WHERE w.integration_id IS NOT NULL;
ALTER TABLE relay.api_keys DROP COLUMN integration_id;
DROP TABLE relay.integrations;
-- +goose StatementEnd
