-- HoldSeat's write: reservation/src/store/holds.rs `INSERT_HOLDS` with a batch of one (hold
-- slot search, the paid-token probe, ON CONFLICT on the seat and slot indexes). Every hold
-- is on a fresh schedule, so none conflicts.
\set n random(1, 2000000000)
WITH u AS (
    SELECT u.*, row_number() OVER (PARTITION BY u.user_id, u.concert_id ORDER BY u.n) AS rank
    FROM UNNEST(ARRAY[gen_random_uuid()], ARRAY['hold-' || :client_id || '-' || :n], ARRAY[gen_random_uuid()],
                ARRAY[gen_random_uuid()], ARRAY[1 + :n::int % 50], ARRAY[120000::bigint],
                ARRAY[now()], ARRAY[now() + interval '5 minutes'],
                ARRAY['00000000-0000-4000-8000-0000000000c2'::uuid], ARRAY[4])
         WITH ORDINALITY AS u(id, user_id, token, schedule_id, seat, price, held_at, expires_at,
                              concert_id, max_holds, n)
)
INSERT INTO reservation.reservations
    (reservation_id, user_id, token, schedule_id, seat_number, price, status, held_at, expires_at,
     concert_id, hold_slot)
SELECT u.id, u.user_id, u.token, u.schedule_id, u.seat, u.price, 'HELD', u.held_at, u.expires_at,
       u.concert_id, slot.n
FROM u
CROSS JOIN LATERAL (
    SELECT s.n FROM generate_series(1, u.max_holds) AS s (n)
    WHERE NOT EXISTS (SELECT 1 FROM reservation.reservations h
                      WHERE h.user_id = u.user_id AND h.concert_id = u.concert_id
                        AND h.status = 'HELD' AND h.hold_slot = s.n)
    ORDER BY s.n OFFSET u.rank - 1 LIMIT 1
) AS slot
WHERE NOT COALESCE((SELECT true FROM reservation.payments paid WHERE paid.token = u.token
                    AND paid.status IN ('CONFIRMED', 'COMPLETED') LIMIT 1), false)
ORDER BY u.user_id, u.concert_id, u.rank
ON CONFLICT DO NOTHING
RETURNING reservation_id;
