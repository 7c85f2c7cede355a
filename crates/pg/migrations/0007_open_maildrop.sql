-- yubin's schema, version 7: a POP3 login's lock, grant and listing in
-- one call, so that a login costs the database one statement rather than
-- two (each statement has its own transaction, messages and wake-ups).
--
-- The function is VOLATILE: each query in it takes a fresh snapshot, so
-- the listing, which runs after the lock is taken, sees what the lock's
-- last holder committed. The count, version and messages are read by one
-- query, so they always describe the same state.
--
-- Returns no row for no such user; `taken` false when another session
-- holds the lock and its lease runs. With a kept listing's key
-- (`cached_*`) unchanged, the arrays come back empty; without one,
-- `n` is null (the listing's length is the count).
CREATE FUNCTION yubin_open_maildrop(
    p_name_key text, p_node text, p_session text, p_lease float8, p_folder text,
    p_grant_client text, p_grant_user text, p_grant_seconds float8,
    p_cached_user bigint, p_cached_count bigint, p_cached_version bigint)
RETURNS TABLE (o_user bigint, o_taken boolean, o_count bigint, o_version bigint,
               o_ids bigint[], o_sizes bigint[], o_wire_sizes bigint[], o_bodies bigint[],
               o_seen boolean[], o_uidls text)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    uid bigint;
BEGIN
    SELECT u.id INTO uid FROM users u WHERE u.name_key = p_name_key;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- A lapsed lease is taken over; the session's own lock is renewed.
    INSERT INTO maildrop_locks AS l (user_id, node, session, lease_until)
    VALUES (uid, p_node, p_session, now() + make_interval(secs => p_lease))
    ON CONFLICT (user_id) DO UPDATE SET node = EXCLUDED.node,
        session = EXCLUDED.session, lease_until = EXCLUDED.lease_until
    WHERE l.lease_until < now() OR l.session = EXCLUDED.session;
    IF NOT FOUND THEN
        RETURN QUERY SELECT uid, false, NULL::bigint, NULL::bigint, NULL::bigint[],
            NULL::bigint[], NULL::bigint[], NULL::bigint[], NULL::boolean[], NULL::text;
        RETURN;
    END IF;
    -- The POP-before-SMTP grant, unless the same one stands, written less
    -- than a second ago (crates/pg/src/grants.rs says why).
    IF p_grant_client IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM relay_grants r WHERE r.client = p_grant_client
        AND r.username = p_grant_user
        AND r.expires >= now() + make_interval(secs => p_grant_seconds
            - least(1.0, p_grant_seconds / 10))) THEN
        INSERT INTO relay_grants AS r (client, username, expires)
        VALUES (p_grant_client, p_grant_user, now() + make_interval(secs => p_grant_seconds))
        ON CONFLICT (client, username) DO UPDATE SET expires = EXCLUDED.expires;
    END IF;
    -- Aggregates take their input in the subquery's order (the index's),
    -- so no array is sorted again. Two queries, not one with a condition
    -- on the key: the function's plans are kept only if one plan serves
    -- every call, and a condition folded away in some calls would have
    -- each call planned afresh.
    IF p_cached_user IS NULL THEN
        RETURN QUERY
        SELECT uid, true, NULL::bigint,
               coalesce((SELECT mv.version FROM maildrop_versions mv
                         WHERE mv.user_id = uid), 0),
               coalesce(array_agg(s.id), '{}'), coalesce(array_agg(s.size), '{}'),
               coalesce(array_agg(s.wire_size), '{}'), coalesce(array_agg(s.body_id), '{}'),
               coalesce(array_agg(s.seen), '{}'), coalesce(string_agg(s.uidl, ' '), '')
        FROM (SELECT m.id, m.size, m.wire_size, m.body_id, m.seen, m.uidl FROM messages m
              WHERE m.user_id = uid AND m.folder = p_folder ORDER BY m.id) AS s;
        RETURN;
    END IF;
    RETURN QUERY
    SELECT uid, true, k.n, k.v, l.* FROM (
        SELECT (SELECT count(*) FROM messages m
                WHERE m.user_id = uid AND m.folder = p_folder) AS n,
               coalesce((SELECT mv.version FROM maildrop_versions mv
                         WHERE mv.user_id = uid), 0) AS v) AS k,
    LATERAL (
        SELECT coalesce(array_agg(s.id), '{}'), coalesce(array_agg(s.size), '{}'),
               coalesce(array_agg(s.wire_size), '{}'), coalesce(array_agg(s.body_id), '{}'),
               coalesce(array_agg(s.seen), '{}'), coalesce(string_agg(s.uidl, ' '), '')
        FROM (SELECT m.id, m.size, m.wire_size, m.body_id, m.seen, m.uidl FROM messages m
              WHERE m.user_id = uid AND m.folder = p_folder
              AND (uid, k.n, k.v) IS DISTINCT FROM
                  (p_cached_user, p_cached_count, p_cached_version)
              ORDER BY m.id) AS s) AS l;
END
$$;
