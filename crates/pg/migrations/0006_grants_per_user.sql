-- yubin's schema, version 6: a POP-before-SMTP grant per client and
-- user. Keyed by the client alone, every login from one address (the
-- users behind a NAT, a company's gateway) rewrote the same row, and each
-- waited for the one before to commit. A client relays as the user of its
-- newest grant, as before.
ALTER TABLE relay_grants DROP CONSTRAINT relay_grants_pkey;
ALTER TABLE relay_grants ADD PRIMARY KEY (client, username);
