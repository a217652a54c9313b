-- QUEUE_ADMIT_PER_SEC: admissions counted per one-second window, shared by every replica.
-- Only the admission round (under its advisory lock) reads or writes this single row.
CREATE TABLE admission_window (
    id           BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    window_start TIMESTAMPTZ NOT NULL,
    admitted     BIGINT NOT NULL CHECK (admitted >= 0)
);
INSERT INTO admission_window (window_start, admitted) VALUES ('epoch', 0);

-- QUEUE_IDLE_TIMEOUT_SECS: when the client last polled (or held a WatchQueue stream open).
-- Replicas record polls in memory and write them in batches.
ALTER TABLE tokens ADD COLUMN last_seen_at TIMESTAMPTZ;
UPDATE tokens SET last_seen_at = issued_at;
ALTER TABLE tokens ALTER COLUMN last_seen_at SET NOT NULL;
CREATE INDEX tokens_waiting_by_last_seen ON tokens (last_seen_at) WHERE state = 'WAITING';
