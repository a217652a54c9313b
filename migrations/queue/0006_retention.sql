-- Retention (platform::retention): tokens that ended (EXPIRED: admitted and done, left, paid
-- or abandoned) are deleted QUEUE_RETENTION_DAYS after they ended. This index finds them
-- oldest first without reading the live line; it holds only ended tokens.
CREATE INDEX tokens_ended ON tokens (expired_at) WHERE state = 'EXPIRED';
