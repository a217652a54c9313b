-- Orders: one payment may buy several seats (up to MAX_HOLDS_PER_USER, every one held under
-- the admission that pays), all confirmed together or none. `payments.reservation_id` is
-- the order's first seat (unique, as before orders existed: a single-seat payment writes
-- exactly what it wrote before); each further seat of an order has a row here. A
-- reservation is in at most one payment, ever: as a first seat (payments_reservation_id_key)
-- or as a further one (this primary key); the two are kept apart by the payment start, which
-- locks every seat of the order and checks both under the locks (store/payment_starts.rs).
CREATE TABLE order_seats (
    reservation_id UUID PRIMARY KEY,
    -- No foreign key: a row is written only by the statement that writes its payment, and the
    -- key's check would cost a trigger per seat on the hottest write of a sale.
    payment_id     UUID NOT NULL
);
-- (A seat's price is its reservation's, fixed at hold time; a payment's amount is the sum
-- over its seats.)
CREATE INDEX order_seats_by_payment ON order_seats (payment_id);
-- Every seat of every payment, in one place: the first on its payment's row, the others in
-- order_seats. The reads that ask "which payment covers this reservation?" or "which seats
-- does this payment cover?" go through it; PostgreSQL pushes their conditions down to both
-- tables' indexes (payments_reservation_id_key / payments_pkey, order_seats_pkey /
-- order_seats_by_payment).
CREATE VIEW payment_seats AS
    SELECT reservation_id, payment_id, true AS first FROM payments
    UNION ALL
    SELECT reservation_id, payment_id, false AS first FROM order_seats;
-- How many seats each payment covers (1 + its order_seats): the saga's confirmation takes
-- the single-seat statement or the order's by it.
ALTER TABLE payments ADD COLUMN seats SMALLINT NOT NULL DEFAULT 1 CHECK (seats >= 1);

-- Give-back: the owner of a sold seat may return it until REFUND_DEADLINE_HOURS before the
-- show. The seat's reservation turns REFUNDED (on sale again at once) in the same transaction
-- that writes its row here (REFUNDING); the refund of its price against the payment's debit
-- is then owed, recovered after a crash under a lease, until the wallet answered (REFUNDED).
CREATE TABLE give_backs (
    reservation_id  UUID PRIMARY KEY,
    payment_id      UUID NOT NULL,
    user_id         TEXT NOT NULL,
    -- Won: what is refunded, the seat's price.
    price           BIGINT NOT NULL CHECK (price >= 0),
    status          TEXT NOT NULL CHECK (status IN ('REFUNDING', 'REFUNDED')),
    requested_at    TIMESTAMPTZ NOT NULL,
    refunded_at     TIMESTAMPTZ,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX give_backs_due ON give_backs (next_attempt_at) WHERE status = 'REFUNDING';

ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('HELD', 'CONFIRMED', 'CANCELLED', 'EXPIRED', 'REFUNDED'));
