-- +goose Up
-- +goose StatementBegin

-- The log is kept (RELAY_EVENT_RETENTION defaults to 0), so the outbox grows without
-- bound, and what reads it by time or by resource must not scan it. Measured with
-- BenchmarkKeptLog (relay/internal/store), fsync on: see README, Performance.
--
-- Built in the migration's transaction, so relay.emit waits while they are built (not
-- CONCURRENTLY: a relay waiting for the migration lock holds a snapshot that a concurrent
-- build would wait for, for ever).

-- created_at: a B-tree instead of the BRIN index. BRIN relies on rows being stored in
-- created_at order, which a kept outbox does not keep: once VACUUM has recorded the free
-- space left at the end of each page, new small events (tags, site.changed) fill those
-- gaps all over the table, every block range then spans from its first day to today,
-- and a query for one day read the whole table (at 100,000 events, every one of its
-- 14,729 pages). New entries go to the right edge of this index, a page that stays hot.
CREATE INDEX outbox_created_at_idx ON relay.outbox (created_at);
DROP INDEX relay.outbox_created_at_brin;

-- relay.event_key (00011_ordering) again, with the same results, made cheap enough to
-- index: every relay.emit now computes it. As a SQL function with a FROM clause it could
-- not be inlined, so each call ran through the SQL-function executor, and each chain of
-- -> parsed the payload once per step; inserting a 1 KiB event into a table indexed on
-- it took ~250-500 µs more than without the index (measured in a PL/pgSQL loop as
-- relay.emit inserts, on this 2-core machine under load). This body is one expression, which
-- PostgreSQL inlines into the index, the view and the fan-out; json_extract_path_text
-- reads each path in one pass; and the cap on long derived keys is a strict PL/pgSQL
-- function of the key, so the key is extracted once: ~50-150 µs more than without the
-- index. (convert_to is only STABLE, which is why the cap cannot be inlined itself.)
-- Its results must not change without a REINDEX of outbox_key_idx.
CREATE FUNCTION relay.key_cap(k text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
BEGIN
    RETURN CASE WHEN length(k) <= 200 THEN k ELSE 'sha256:' || encode(sha256(convert_to(k, 'UTF8')), 'hex') END;
END
$fn$;

CREATE OR REPLACE FUNCTION relay.event_key(event text, data json, ordering_key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT relay.key_cap(coalesce(ordering_key,
                                  nullif(json_extract_path_text(data, split_part(event, '.', 1), 'current', 'id'), ''),
                                  nullif(json_extract_path_text(data, split_part(event, '.', 1), 'previous', 'id'), '')))
$fn$;

-- Everything that happened to one post, page, tag or member (README, Auditing): the
-- events of one key, relay.events.key as the view computes it. Without it the query
-- reads and parses every payload (at 100,000 events: 1.7 s, where the index takes
-- 0.2 ms).
CREATE INDEX outbox_key_idx ON relay.outbox (relay.event_key(metadata ->> 'event', payload, ordering_key));

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP INDEX relay.outbox_key_idx;
CREATE OR REPLACE FUNCTION relay.event_key(event text, data json, ordering_key text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN length(k) <= 200 THEN k ELSE 'sha256:' || encode(sha256(convert_to(k, 'UTF8')), 'hex') END
      FROM (SELECT coalesce(ordering_key,
                            nullif(data -> split_part(event, '.', 1) -> 'current' ->> 'id', ''),
                            nullif(data -> split_part(event, '.', 1) -> 'previous' ->> 'id', '')) AS k) AS s
$fn$;
DROP FUNCTION relay.key_cap(text);
CREATE INDEX outbox_created_at_brin ON relay.outbox USING brin (created_at) WITH (autosummarize = on);
DROP INDEX relay.outbox_created_at_idx;
-- +goose StatementEnd
