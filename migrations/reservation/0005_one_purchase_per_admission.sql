-- One admission buys one seat: paying expires the queue token (결제 완료 시 대기열 토큰 만료),
-- so a token may have at most one payment that is under way or done. Payments that were given
-- up (COMPENSATING, COMPENSATED, FAILED) do not count: the admission may still buy a seat.
-- The unique index decides races between concurrent payments of one token on any replica.
CREATE UNIQUE INDEX payments_one_purchase_per_token
    ON payments (token) WHERE status IN ('STARTED', 'CONFIRMED', 'COMPLETED');
