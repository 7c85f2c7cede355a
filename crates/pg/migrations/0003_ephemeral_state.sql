-- yubin's schema, version 3: what a node keeps only for a while is not
-- written to the WAL. Maildrop locks, POP-before-SMTP grants and login
-- penalties are renewed all the time and worth nothing after a crash; as
-- unlogged tables, taking a lock or recording a grant does not wait for a
-- WAL flush. After a crash of the database (or a failover to a replica,
-- which does not receive them) they start empty: a session whose lock is
-- gone cannot commit its UPDATE (it is checked in the same statement),
-- clients log in again for a new grant, and guessing starts from no
-- penalty, as when one node restarts.
ALTER TABLE maildrop_locks SET UNLOGGED;
ALTER TABLE relay_grants SET UNLOGGED;
ALTER TABLE login_penalties SET UNLOGGED;

-- A foreign key would lock the user's row on every lock taken, and that
-- row lock is written to the WAL, which makes each login wait for a
-- flush. A lock of a user removed meanwhile is harmless and lapses.
ALTER TABLE maildrop_locks DROP CONSTRAINT maildrop_locks_user_id_fkey;

-- The hourly sweep of bodies no delivery finished looks them up by age.
CREATE INDEX bodies_by_age ON bodies (created);
