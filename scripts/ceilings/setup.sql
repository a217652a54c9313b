-- Data the ceiling scripts read and write, in the services' own schemas (migrated by the
-- services at start-up). Run once per ceilings run, on a fresh database.
-- 100,000 waiting tokens with ids derived from 1..100000, for the status read.
INSERT INTO queue.tokens (token, user_id, concert_id, state, issued_at, last_seen_at)
SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid, 'ceiling-' || i,
       '00000000-0000-4000-8000-0000000000c0', 'WAITING', now(), now()
FROM generate_series(1, 100000) AS i;
-- 10,000 wallets with room for any number of debits, for the debit and the purchase.
INSERT INTO wallet.accounts (user_id, balance)
SELECT 'ceiling-' || i, 900000000000 FROM generate_series(1, 10000) AS i;
ANALYZE;
