-- How quickly each room's admitted people have been finishing (issue #26): the quickest
-- median journey (admission to the token's end, paid or left), per 10-second window, seen
-- within the last minute, and when. A rate-limited room admits no more people at once than
-- that pace calls for (domain::AdmissionPolicy::concurrency). Only the admission round
-- (under its lock) writes these two columns; NULL: no journey seen yet.
ALTER TABLE rooms
    ADD COLUMN pace_ms BIGINT CHECK (pace_ms >= 0),
    ADD COLUMN pace_seen_at TIMESTAMPTZ;
