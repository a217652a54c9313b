-- IssueToken's write: queue/src/store/joins.rs `insert_joins` with a batch of one (the
-- join fence's shared lock (JOIN_FENCE), the room's opening, ON CONFLICT on the live-token index).
\set n random(1, 2000000000)
INSERT INTO queue.tokens (token, user_id, concert_id, pre_queue_key, state, issued_at, last_seen_at)
SELECT u.token, u.user_id, u.concert_id,
       CASE WHEN r.sale_opens_at > statement_timestamp() THEN u.pre_queue_key END,
       'WAITING', u.now, u.now
FROM (SELECT pg_advisory_xact_lock_shared(349139061070)) AS fence,
     UNNEST(ARRAY[gen_random_uuid()], ARRAY['join-' || :client_id || '-' || :n],
            ARRAY['00000000-0000-4000-8000-0000000000c1'::uuid], ARRAY[-:n::bigint], ARRAY[now()])
     WITH ORDINALITY AS u (token, user_id, concert_id, pre_queue_key, now, n)
     LEFT JOIN queue.rooms r ON r.concert_id = u.concert_id
ORDER BY u.n
ON CONFLICT (user_id, concert_id) WHERE state <> 'EXPIRED' DO NOTHING
RETURNING token, user_id, concert_id, seq, place, state, issued_at, expires_at;
