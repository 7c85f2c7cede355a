-- yubin's schema, version 9: each user's last POP3 login, for LOGIN-DELAY
-- (RFC 2449 §6.5), shared by the nodes: a client behind a load balancer
-- that logs in again too soon is refused on every node, not only on the
-- one that saw its last login. Keyed by the name as logins look it up
-- (`users.name_key`). Unlogged, as the locks are: after a crash of the
-- database, each user's next login is let in.
CREATE UNLOGGED TABLE pop3_logins (
    name_key text PRIMARY KEY,
    last     timestamptz NOT NULL
);
