-- +goose Up
-- +goose StatementBegin

-- Per webhook and minute, what its attempts came to: the console's success rates,
-- attempt-time percentiles and per-minute charts read these few rows instead of every
-- attempt (a day of a busy relay is millions). Written by the same statement that
-- records the attempts, so it is exact: one row per (webhook, minute) with traffic.
-- Durations and commit-to-receipt lags are counted in buckets (their upper bounds, in
-- ms, are package store's DurationBuckets and LagBuckets); a percentile is read as the
-- bucket it falls in.
CREATE TABLE relay.webhook_minutes (
    webhook_id varchar(24) NOT NULL,
    minute     timestamptz NOT NULL,
    attempts   integer NOT NULL DEFAULT 0,
    succeeded  integer NOT NULL DEFAULT 0,
    retried    integer NOT NULL DEFAULT 0, -- failed, another attempt scheduled
    failed     integer NOT NULL DEFAULT 0, -- failed for good
    duration_buckets integer[] NOT NULL, -- attempt durations
    lag_buckets      integer[] NOT NULL, -- commit to receipt, successful attempts only
    PRIMARY KEY (webhook_id, minute)
);
CREATE INDEX webhook_minutes_minute_idx ON relay.webhook_minutes (minute);

-- An array of n counts with a 1 in bucket i (1-based; 0 or NULL: no count at all).
CREATE FUNCTION relay.one_hot(i integer, n integer) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT array_agg(CASE WHEN g = i THEN 1 ELSE 0 END ORDER BY g) FROM generate_series(1, n) AS g
$fn$;

-- Adds two bucket arrays element by element.
CREATE FUNCTION relay.add_buckets(a integer[], b integer[]) RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT array_agg(coalesce(a[i], 0) + coalesce(b[i], 0) ORDER BY i)
      FROM generate_series(1, greatest(array_length(a, 1), array_length(b, 1))) AS i
$fn$;

CREATE AGGREGATE relay.sum_buckets(integer[]) (SFUNC = relay.add_buckets, STYPE = integer[]);

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP AGGREGATE relay.sum_buckets(integer[]);
DROP FUNCTION relay.add_buckets(integer[], integer[]);
DROP FUNCTION relay.one_hot(integer, integer);
DROP TABLE relay.webhook_minutes;
-- +goose StatementEnd
