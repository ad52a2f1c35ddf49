-- +goose Up
-- Three fifths of each page of relay.deliveries stay free, so that a claim's lease
-- (which changes no indexed column) is a HOT update: the new row version on the same
-- page and no new index entry. A lease makes a row longer (owner, token, expiry were
-- NULL), so a page of pending rows needs more than its rows' size again free. At 80
-- (00001) a claim of 100 neighbouring rows wrote 22 of them HOT, at 50 82, at 40 all
-- (store's TestClaimLeasesAreHOTUpdates); each other lease wrote four index entries.
-- Draining 30,000 events to one webhook with fsync on, a claim took 1.5-1.7 ms at 80,
-- 1.05-1.4 at 50, 0.89-1.02 at 40. A page's dead versions are pruned when it is next
-- read, so the table grows far less than the setting says: 16 MiB against 13 MiB after
-- those 30,000 deliveries. The setting applies to pages written from now on.
ALTER TABLE relay.deliveries SET (fillfactor = 40);

-- +goose Down
ALTER TABLE relay.deliveries SET (fillfactor = 80);
