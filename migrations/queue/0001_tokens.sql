-- Queue schema: one row per token. `seq` (from one sequence) is the FIFO order of joins.

CREATE TABLE tokens (
    token        UUID PRIMARY KEY,
    user_id      TEXT NOT NULL,
    seq          BIGSERIAL NOT NULL UNIQUE,
    state        TEXT NOT NULL CHECK (state IN ('WAITING', 'ACTIVE', 'EXPIRED')),
    issued_at    TIMESTAMPTZ NOT NULL,
    activated_at TIMESTAMPTZ,
    -- Set on admission: when the ACTIVE token stops being accepted.
    expires_at   TIMESTAMPTZ,
    expired_at   TIMESTAMPTZ,
    CHECK ((state = 'WAITING') = (activated_at IS NULL) OR state = 'EXPIRED'),
    CHECK (state <> 'ACTIVE' OR expires_at IS NOT NULL)
);

-- A user has at most one live (WAITING or ACTIVE) token: joining twice returns the same one.
CREATE UNIQUE INDEX tokens_one_live_per_user ON tokens (user_id) WHERE state <> 'EXPIRED';
-- The line itself, in join order.
CREATE INDEX tokens_waiting_by_seq ON tokens (seq) WHERE state = 'WAITING';
-- Active tokens by expiry, for the admission round's sweep.
CREATE INDEX tokens_active_by_expiry ON tokens (expires_at) WHERE state = 'ACTIVE';
