-- yubin's schema, version 4: the outbound queue. Every node's delivery
-- engine works from one table; an attempt is made under a claim written
-- on the entry's row (a token and a lease its node renews), so one
-- attempt at a time is made for an entry across the cluster, a dead
-- node's entries are taken over when their leases run out, and every
-- write of an attempt's outcome names its token: PostgreSQL checks that
-- against the row's newest version, so a node whose claim was taken over
-- changes nothing. Claims are logged like the rest of the row: a crash
-- of the database or a failover keeps them, and no second attempt starts
-- while the first one's lease runs.

-- Version 1 made a placeholder no yubin ever wrote to. Refuse, rather
-- than drop, should anything be in it.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM queue) THEN
        RAISE EXCEPTION 'the queue table of schema version 1 holds rows yubin did not write; move them away first';
    END IF;
END
$$;
DROP TABLE queue;

-- One row per entry: its envelope and the delivery engine's record of it
-- (what the queue directory keeps in active/ and state/).
CREATE TABLE queue (
    id            text PRIMARY KEY,
    created       bigint NOT NULL,              -- Unix seconds
    sender        text NOT NULL,                -- '' for the null sender
    recipients    text[] NOT NULL,
    client        text NOT NULL,
    auth          text NOT NULL,                -- why relaying was allowed
    body_type     text NOT NULL,                -- MAIL BODY=, '' if not given
    smtputf8      boolean NOT NULL,
    wire_size     bigint,                       -- octets with CRLF line ends
    body_id       bigint NOT NULL REFERENCES bodies(id),
    attempts      integer NOT NULL DEFAULT 0,
    next_attempt  bigint NOT NULL DEFAULT 0,    -- Unix seconds, by the nodes' clocks
    last_error    text NOT NULL DEFAULT '',
    done          text[] NOT NULL DEFAULT '{}', -- recipients delivered or bounced
    warned        boolean NOT NULL DEFAULT false,
    bounce        boolean NOT NULL DEFAULT false, -- `yubin queue bounce` asked for it
    claim_node    text,                         -- who is making an attempt, if anyone
    claim_token   text,
    lease_until   timestamptz
);
CREATE INDEX queue_by_body ON queue (body_id);
CREATE INDEX queue_by_claim ON queue (claim_token) WHERE claim_token IS NOT NULL;

-- `yubin queue flush` and `bounce`: a counter every node watches.
CREATE TABLE queue_flushes (
    one         boolean PRIMARY KEY DEFAULT true CHECK (one),
    requests    bigint NOT NULL
);
INSERT INTO queue_flushes VALUES (true, 0);
