-- What a monolith would commit for one purchase, in one transaction: the sold seat, the
-- balance and its ledger entry, the payment. The saga's floor: it cannot do less durable
-- work than this (it does it over three services and several commits).
\set u random(1, 10000)
\set n random(1, 2000000000)
BEGIN;
WITH account AS (UPDATE wallet.accounts SET balance = balance - 120000, updated_at = now()
                 WHERE user_id = 'ceiling-' || :u)
INSERT INTO wallet.ledger_entries (user_id, kind, amount, balance_after, idempotency_key)
VALUES ('ceiling-' || :u, 'DEBIT', 120000, 1, 'p-' || :client_id || '-' || :n);
WITH seat AS (
    INSERT INTO reservation.reservations
        (reservation_id, user_id, token, schedule_id, seat_number, price, status, held_at, expires_at, concert_id)
    VALUES (gen_random_uuid(), 'ceiling-' || :u, gen_random_uuid(), gen_random_uuid(), 1 + :n::int % 50, 120000,
            'CONFIRMED', now(), now() + interval '5 minutes', '00000000-0000-4000-8000-0000000000c3')
    RETURNING reservation_id, token)
INSERT INTO reservation.payments
    (payment_id, reservation_id, user_id, token, idempotency_key, amount, status, created_at, updated_at,
     paid_at, next_attempt_at)
SELECT gen_random_uuid(), seat.reservation_id, 'ceiling-' || :u, seat.token, 'p-' || :client_id || '-' || :n,
       120000, 'COMPLETED', now(), now(), now(), now()
FROM seat;
COMMIT;
