-- One waiting room per concert: its own line, its own admission policy, and a pre-queue
-- for joins made before the concert's sale opens.

-- A room exists once anyone joined the concert's queue (or an operator set its policy).
CREATE TABLE rooms (
    concert_id      UUID PRIMARY KEY,
    -- Copied from catalog when the room is created; NULL: on sale at once.
    sale_opens_at   TIMESTAMPTZ,
    -- Per-concert overrides of the service-wide policy; NULL follows the default.
    max_active      BIGINT CHECK (max_active BETWEEN 1 AND 1000000),
    admit_per_sec   BIGINT CHECK (admit_per_sec BETWEEN 0 AND 1000000),
    active_ttl_secs BIGINT CHECK (active_ttl_secs BETWEEN 1 AND 86400),
    -- This room's QUEUE_ADMIT_PER_SEC window; only the admission round (under its lock)
    -- reads or writes these two columns.
    window_start    TIMESTAMPTZ NOT NULL DEFAULT 'epoch',
    window_admitted BIGINT NOT NULL DEFAULT 0 CHECK (window_admitted >= 0),
    created_at      TIMESTAMPTZ NOT NULL
);
DROP TABLE admission_window;

-- Tokens from before rooms were per concert belong to no concert: they end here (tokens
-- are short-lived; a user simply joins again).
UPDATE tokens SET state = 'EXPIRED', expired_at = now() WHERE state <> 'EXPIRED';
ALTER TABLE tokens ADD COLUMN concert_id UUID NOT NULL DEFAULT '00000000-0000-0000-0000-000000000000';
ALTER TABLE tokens ALTER COLUMN concert_id DROP DEFAULT;

-- Order in the line. A join after the sale opened takes its place from `seq` (commit order,
-- positive). A join before it (the pre-queue) draws a random negative key instead, so at the
-- opening instant the whole pre-queue stands ahead of every later join, in random order.
ALTER TABLE tokens ADD COLUMN pre_queue_key BIGINT CHECK (pre_queue_key < 0);
ALTER TABLE tokens ADD COLUMN place BIGINT GENERATED ALWAYS AS (COALESCE(pre_queue_key, seq)) STORED;

DROP INDEX tokens_one_live_per_user;
-- A user has at most one live token per concert (and may wait for several concerts).
CREATE UNIQUE INDEX tokens_one_live_per_user_concert ON tokens (user_id, concert_id) WHERE state <> 'EXPIRED';
DROP INDEX tokens_waiting_by_seq;
-- Each room's line, in order.
CREATE INDEX tokens_waiting_by_place ON tokens (concert_id, place) WHERE state = 'WAITING';
DROP INDEX tokens_active_by_expiry;
-- Active tokens per room (few: at most the rooms' max_active), also swept by expiry.
CREATE INDEX tokens_active_by_concert ON tokens (concert_id, expires_at) WHERE state = 'ACTIVE';
-- Admissions per room, for GetQueueStats.
CREATE INDEX tokens_admitted_by_concert ON tokens (concert_id, activated_at) WHERE activated_at IS NOT NULL;
