-- Reservation schema: holds/sales of seats and the payment saga that turns a hold into a sale.

CREATE TABLE reservations (
    reservation_id UUID PRIMARY KEY,
    user_id        TEXT NOT NULL,
    -- The queue token that placed the hold.
    token          UUID NOT NULL,
    schedule_id    UUID NOT NULL,
    seat_number    INTEGER NOT NULL CHECK (seat_number BETWEEN 1 AND 50),
    -- Won, fixed at hold time.
    price          BIGINT NOT NULL CHECK (price >= 0),
    status         TEXT NOT NULL CHECK (status IN ('HELD', 'CONFIRMED', 'CANCELLED', 'EXPIRED')),
    held_at        TIMESTAMPTZ NOT NULL,
    expires_at     TIMESTAMPTZ NOT NULL,
    confirmed_at   TIMESTAMPTZ,
    released_at    TIMESTAMPTZ,
    CHECK (expires_at > held_at)
);

-- THE rule: a seat is held or sold at most once at any time, whatever the number of replicas.
CREATE UNIQUE INDEX reservations_one_live_per_seat
    ON reservations (schedule_id, seat_number) WHERE status IN ('HELD', 'CONFIRMED');
CREATE INDEX reservations_by_user ON reservations (user_id, held_at DESC);
CREATE INDEX reservations_held_by_expiry ON reservations (expires_at) WHERE status = 'HELD';

-- One payment saga per reservation. Its status is written before each side effect, so a
-- crash anywhere leaves a row the recovery worker can finish.
CREATE TABLE payments (
    payment_id      UUID PRIMARY KEY,
    reservation_id  UUID NOT NULL UNIQUE REFERENCES reservations (reservation_id),
    user_id         TEXT NOT NULL,
    -- The queue token to expire once the seat is confirmed.
    token           UUID NOT NULL,
    idempotency_key TEXT NOT NULL,
    -- Won.
    amount          BIGINT NOT NULL CHECK (amount >= 0),
    status          TEXT NOT NULL CHECK (status IN
                        ('STARTED', 'CONFIRMED', 'COMPLETED', 'COMPENSATING', 'COMPENSATED', 'FAILED')),
    failure_reason  TEXT,
    -- Wallet balance in won right after the debit.
    balance_after   BIGINT,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    paid_at         TIMESTAMPTZ,
    -- Lease: the recovery worker leaves a saga alone until then.
    next_attempt_at TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (user_id, idempotency_key)
);
CREATE INDEX payments_unfinished ON payments (next_attempt_at)
    WHERE status IN ('STARTED', 'CONFIRMED', 'COMPENSATING');
CREATE INDEX payments_by_token ON payments (token);
