-- yubin's schema, version 8: a POP-before-SMTP grant is written again
-- when another user's grant to the same client is newer, so the client
-- relays as the user who logged in last.
--
-- Versions 6 and 7 left a grant that stood fresh (written less than a
-- second ago, see crates/pg/src/grants.rs) as it was, even when another
-- user had logged in from the same address in between: alice, bob, alice
-- within a second left bob's grant the newest, and the address relayed
-- as bob. A grant is now left only while it is also the client's newest
-- (ties go to the first name, as in `Database::relay_grant`). The rule is
-- written out here, in the login's function (whose body is version 7's
-- but for the grant), and in `Database::write_grants`: a function of its
-- own called from here cost each login a planning of its statement.
CREATE OR REPLACE FUNCTION yubin_open_maildrop(
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
    IF p_grant_client IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM (SELECT n.username, n.expires FROM relay_grants n
                       WHERE n.client = p_grant_client
                       ORDER BY n.expires DESC, n.username LIMIT 1) AS newest
        WHERE newest.username = p_grant_user
        AND newest.expires >= now() + make_interval(secs => p_grant_seconds
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
