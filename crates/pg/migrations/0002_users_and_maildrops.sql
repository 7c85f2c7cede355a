-- yubin's schema, version 2: users keep every passwd-file field, nodes
-- notice user changes with one cheap read, and maildrops keep what POP3
-- and the cleanup need.

-- The passwd-file's fields, as the file has them (`userdb_mail` and
-- `userdb_junk` stay in `extra`, read from there as from the file): a
-- user moved in and out comes back the same line.
ALTER TABLE users DROP COLUMN mail, DROP COLUMN junk;
UPDATE users SET home = '' WHERE home IS NULL;
ALTER TABLE users
    ALTER COLUMN home SET DEFAULT '',
    ALTER COLUMN home SET NOT NULL,
    ADD COLUMN uid   text NOT NULL DEFAULT '',
    ADD COLUMN gid   text NOT NULL DEFAULT '',
    ADD COLUMN gecos text NOT NULL DEFAULT '',
    ADD COLUMN shell text NOT NULL DEFAULT '',
    ADD COLUMN extra text NOT NULL DEFAULT '';

-- One number that changes with every change to the users: a node asks
-- for it every few seconds and reloads only when it moved.
CREATE TABLE users_version (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    version     bigint NOT NULL
);
INSERT INTO users_version VALUES (true, 0);
CREATE FUNCTION yubin_users_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE users_version SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER users_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION yubin_users_changed();

-- A body written but never committed to a maildrop (the node died
-- between the two) is found by its age and removed.
ALTER TABLE bodies ADD COLUMN created timestamptz NOT NULL DEFAULT now();
CREATE INDEX messages_by_body ON messages (body_id);
CREATE INDEX queue_by_body ON queue (body_id);

-- RETR'd messages a client left on the server (Maildir's S flag).
ALTER TABLE messages ADD COLUMN seen boolean NOT NULL DEFAULT false;

-- Sizes computed from a message by a named rule (the RFC 6858 surrogate's
-- size), once per message.
CREATE TABLE derived_sizes (
    message_id  bigint NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    rule        text NOT NULL,
    size        bigint,                      -- NULL: as listed
    PRIMARY KEY (message_id, rule)
);

-- A lock names its session; the node renews the leases of the sessions
-- it holds, and UPDATE commits only under its own session's lock.
CREATE INDEX maildrop_locks_by_session ON maildrop_locks (session);

-- Bodies are mostly base64 already; compressing them costs CPU on every
-- delivery for little space, so chunks are stored out of line as they are.
ALTER TABLE body_chunks ALTER COLUMN data SET STORAGE EXTERNAL;
