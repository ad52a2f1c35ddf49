-- +goose Up
-- +goose StatementBegin

-- Room on each page of relay.deliveries for a second version of its rows: a claim
-- changes only the lease columns, which no index holds, so with room on the page the
-- new version is a HOT update (no index entries). With full pages every claimed
-- delivery cost four index insertions (and their WAL) before its attempt. Affects
-- pages written from now on.
ALTER TABLE relay.deliveries SET (fillfactor = 80);

-- +goose StatementEnd

-- +goose Down
-- +goose StatementBegin
ALTER TABLE relay.deliveries RESET (fillfactor);
-- +goose StatementEnd
