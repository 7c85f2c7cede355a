-- yubin's schema, version 5: a node keeps the listings of large
-- maildrops and asks, at each login, whether they are still right. A
-- listing is right while the maildrop's message count and its version
-- are unchanged: a delivery changes the count; UPDATE (deletions, seen
-- flags) and a delivery taken back change the version, in the statement
-- that makes the change. Deliveries do not write here, so that deliveries
-- to one user never wait for each other.
CREATE SEQUENCE maildrop_version;
CREATE TABLE maildrop_versions (
    user_id     bigint PRIMARY KEY,
    version     bigint NOT NULL
);
