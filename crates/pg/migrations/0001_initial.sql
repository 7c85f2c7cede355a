-- yubin's schema, version 1: everything several nodes share.

-- Users, as the passwd-file holds them (the stored password keeps its
-- {SCHEME} prefix, so `yubin user import` keeps Dovecot's hashes).
CREATE TABLE users (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL,
    name_key    text NOT NULL UNIQUE,        -- lower case: lookups ignore ASCII case
    password    text NOT NULL,
    home        text,
    mail        text,
    junk        boolean,
    created     timestamptz NOT NULL DEFAULT now()
);

-- Message bodies, apart from the maildrop entries that name them: a body
-- is written in chunks (RETR streams it back chunk by chunk), and a later
-- object store replaces this table, not the maildrop.
CREATE TABLE bodies (
    id          bigserial PRIMARY KEY,
    size        bigint NOT NULL
);
CREATE TABLE body_chunks (
    body_id     bigint NOT NULL REFERENCES bodies(id) ON DELETE CASCADE,
    seq         integer NOT NULL,
    data        bytea NOT NULL,
    PRIMARY KEY (body_id, seq)
);

-- Maildrops: one row per message, in arrival order (id), with its UIDL
-- and its exact sizes fixed at delivery.
CREATE TABLE messages (
    id          bigserial PRIMARY KEY,
    user_id     bigint NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    folder      text NOT NULL DEFAULT '',     -- '' is the maildrop POP3 serves
    uidl        text NOT NULL,
    size        bigint NOT NULL,              -- octets as stored (LF)
    wire_size   bigint NOT NULL,              -- octets on the POP3 wire
    body_id     bigint NOT NULL REFERENCES bodies(id),
    delivered   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (user_id, uidl)
);
CREATE INDEX messages_by_maildrop ON messages (user_id, folder, id);

-- Maildrop locks: one session per maildrop across the cluster. A lock
-- lives as long as its lease, which its node renews; a dead node's locks
-- lapse.
CREATE TABLE maildrop_locks (
    user_id     bigint PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    node        text NOT NULL,
    session     text NOT NULL,
    lease_until timestamptz NOT NULL
);

-- Nodes and their heartbeats (lock owners, queue leases).
CREATE TABLE nodes (
    name        text PRIMARY KEY,
    seen        timestamptz NOT NULL
);

-- POP-before-SMTP grants, keyed by client (an IPv4 address, or an IPv6
-- prefix, as text: yubin_auth's ClientKey).
CREATE TABLE relay_grants (
    client      text PRIMARY KEY,
    username    text NOT NULL,
    expires     timestamptz NOT NULL
);
CREATE INDEX relay_grants_expiry ON relay_grants (expires);

-- Failed logins per client (IPv6 by /64).
CREATE TABLE login_penalties (
    client      text PRIMARY KEY,
    failures    integer NOT NULL,
    last_failure timestamptz NOT NULL,
    last_attempt bigint NOT NULL
);

-- Greylisting's triplets.
CREATE TABLE greylist (
    network     text NOT NULL,
    sender      text NOT NULL,
    recipient   text NOT NULL,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL,
    passed      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (network, sender, recipient)
);

-- The outbound queue: one entry per message, claimed by one node at a
-- time through a lease (FOR UPDATE SKIP LOCKED).
CREATE TABLE queue (
    id          text PRIMARY KEY,
    envelope    bytea NOT NULL,
    body_id     bigint NOT NULL REFERENCES bodies(id),
    next_attempt timestamptz NOT NULL,
    lease_node  text,
    lease_until timestamptz,
    created     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_due ON queue (next_attempt);
