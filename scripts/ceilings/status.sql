-- GetQueueStatus's read when a token is not in the replica's snapshot:
-- queue/src/store/tokens.rs `get` (a primary-key read).
\set n random(1, 100000)
SELECT token, user_id, concert_id, seq, place, state, issued_at, expires_at
FROM queue.tokens WHERE token = ('00000000-0000-4000-8000-' || lpad(to_hex(:n::int), 12, '0'))::uuid;
