-- Orders: one payment may buy several seats (up to MAX_HOLDS_PER_USER, every one held under
-- the admission that pays), all confirmed together or none. Each seat a payment covers has a
-- row here; the primary key makes "a reservation has at most one payment, ever" a property of
-- the table, whatever the number of replicas (it was payments.reservation_id's UNIQUE, which
-- stays: that column names the order's first seat, as before orders existed).
--
-- Give-back: the owner of a sold seat may return it before REFUND_DEADLINE_HOURS before the
-- show. The seat's reservation turns REFUNDED (the seat is on sale again at once) in the same
-- transaction that marks its row here REFUNDING; the refund of its price against the order's
-- debit is then owed, and recovered after a crash, until the wallet answered (REFUNDED).
CREATE TABLE payment_seats (
    reservation_id        UUID PRIMARY KEY,
    payment_id            UUID NOT NULL REFERENCES payments (payment_id),
    -- Won: the seat's price, fixed at hold time; the payment's amount is the sum over its seats.
    price                 BIGINT NOT NULL CHECK (price >= 0),
    refund_status         TEXT CHECK (refund_status IN ('REFUNDING', 'REFUNDED')),
    refund_requested_at   TIMESTAMPTZ,
    refunded_at           TIMESTAMPTZ,
    -- Lease of the give-back's refund step, as payments.next_attempt_at for the saga.
    refund_next_attempt_at TIMESTAMPTZ,
    refund_attempts       INTEGER NOT NULL DEFAULT 0,
    CHECK ((refund_status IS NULL) = (refund_requested_at IS NULL))
);
CREATE INDEX payment_seats_by_payment ON payment_seats (payment_id);
CREATE INDEX payment_seats_refunds_due ON payment_seats (refund_next_attempt_at) WHERE refund_status = 'REFUNDING';
INSERT INTO payment_seats (reservation_id, payment_id, price)
SELECT reservation_id, payment_id, amount FROM payments;

-- A sold seat given back: its money is returned (payment_seats.refund_status) and the seat is
-- on sale again (the live-seat unique index covers HELD and CONFIRMED only).
ALTER TABLE reservations DROP CONSTRAINT reservations_status_check;
ALTER TABLE reservations ADD CONSTRAINT reservations_status_check
    CHECK (status IN ('HELD', 'CONFIRMED', 'CANCELLED', 'EXPIRED', 'REFUNDED'));
