-- +goose Up
-- +goose StatementBegin

-- Per webhook and minute, what its attempts came to: the console's success rates,
-- attempt-time percentiles and per-minute charts read these few rows instead of every
-- attempt (a day of a busy relay is millions). Written by the same statement that
-- records the attempts, so it is exact: one row per (webhook, minute) with traffic.
-- Durations and commit-to-receipt lags are counted in buckets (their upper bounds, in
-- ms, are package store's DurationBuckets and LagBuckets, columns d1..d10 and l1..l10); a
-- percentile is read as the bucket it falls in.
CREATE TABLE relay.webhook_minutes (
    webhook_id varchar(24) NOT NULL,
    minute     timestamptz NOT NULL,
    attempts   integer NOT NULL DEFAULT 0,
    succeeded  integer NOT NULL DEFAULT 0,
    retried    integer NOT NULL DEFAULT 0, -- failed, another attempt scheduled
    failed     integer NOT NULL DEFAULT 0, -- failed for good
    -- Attempt durations, bucket by bucket (d1 the fastest, d10 above the last bound);
    -- plain columns, so that adding a batch is additions the planner does not call out for.
    d1 integer NOT NULL DEFAULT 0, d2 integer NOT NULL DEFAULT 0, d3 integer NOT NULL DEFAULT 0,
    d4 integer NOT NULL DEFAULT 0, d5 integer NOT NULL DEFAULT 0, d6 integer NOT NULL DEFAULT 0,
    d7 integer NOT NULL DEFAULT 0, d8 integer NOT NULL DEFAULT 0, d9 integer NOT NULL DEFAULT 0,
    d10 integer NOT NULL DEFAULT 0,
    -- Commit to receipt of the successful attempts, likewise.
    l1 integer NOT NULL DEFAULT 0, l2 integer NOT NULL DEFAULT 0, l3 integer NOT NULL DEFAULT 0,
    l4 integer NOT NULL DEFAULT 0, l5 integer NOT NULL DEFAULT 0, l6 integer NOT NULL DEFAULT 0,
    l7 integer NOT NULL DEFAULT 0, l8 integer NOT NULL DEFAULT 0, l9 integer NOT NULL DEFAULT 0,
    l10 integer NOT NULL DEFAULT 0,
    PRIMARY KEY (webhook_id, minute)
);
CREATE INDEX webhook_minutes_minute_idx ON relay.webhook_minutes (minute);

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
DROP TABLE relay.webhook_minutes;
-- +goose StatementEnd
