-- Retention (platform::retention): holds that ended without a payment (EXPIRED: ran out;
-- CANCELLED: released) are deleted RESERVATION_RETENTION_DAYS after they ended. Holds a
-- payment names (sold, given back, or those of a failed or compensated payment) are the
-- books and are never deleted. This index finds the ended holds oldest first.
CREATE INDEX reservations_ended ON reservations (released_at) WHERE status IN ('EXPIRED', 'CANCELLED');
