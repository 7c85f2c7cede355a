-- yubin's schema, version 5: a node keeps the listings of large
-- maildrops and asks, at each login, whether they are still right. A
-- listing is right while the maildrop's message count and its version
-- are unchanged: a delivery changes the count; any deletion or change of
-- a message row (UPDATE, a delivery taken back, a user removed, an
-- administrator's own SQL) changes the version, through these triggers,
-- in the transaction that makes the change. Deliveries do not write
-- here, so that deliveries to one user never wait for each other.
CREATE SEQUENCE maildrop_version;
CREATE TABLE maildrop_versions (
    user_id     bigint PRIMARY KEY,
    version     bigint NOT NULL
);
CREATE FUNCTION yubin_maildrop_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO maildrop_versions (user_id, version)
    SELECT user_id, nextval('maildrop_version') FROM (SELECT DISTINCT user_id FROM changed) AS c
    ON CONFLICT (user_id) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_deleted AFTER DELETE ON messages
    REFERENCING OLD TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION yubin_maildrop_changed();
CREATE TRIGGER messages_changed AFTER UPDATE ON messages
    REFERENCING NEW TABLE AS changed
    FOR EACH STATEMENT EXECUTE FUNCTION yubin_maildrop_changed();
