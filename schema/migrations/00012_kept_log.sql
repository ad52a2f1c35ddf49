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

-- Everything that happened to one post, page, tag or member (README, Auditing): the
-- events of one key, relay.events.key as the view computes it. Without it the query
-- reads and parses every payload (at 100,000 events: 1.7 s, where the index takes
-- 0.2 ms).
CREATE INDEX outbox_key_idx ON relay.outbox (relay.event_key(metadata ->> 'event', payload, ordering_key));

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP INDEX relay.outbox_key_idx;
CREATE INDEX outbox_created_at_brin ON relay.outbox USING brin (created_at) WITH (autosummarize = on);
DROP INDEX relay.outbox_created_at_idx;
-- +goose StatementEnd
