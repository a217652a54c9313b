-- Debit: wallet/src/store/apply.rs `try_apply` for a DEBIT, one transaction of three
-- statements (lock the account, look the key up, new balance + ledger entry).
\set u random(1, 10000)
\set n random(1, 2000000000)
BEGIN;
INSERT INTO wallet.accounts (user_id) VALUES ('ceiling-' || :u)
ON CONFLICT (user_id) DO UPDATE SET updated_at = now() RETURNING balance;
SELECT e.entry_id, 'DEBIT' = 'DEBIT' AND EXISTS (SELECT 1 FROM wallet.voided_debits v
                    WHERE v.user_id = 'ceiling-' || :u AND v.debit_key = 'd-' || :client_id || '-' || :n) AS voided
FROM (SELECT 1) AS one
LEFT JOIN wallet.ledger_entries e ON e.user_id = 'ceiling-' || :u AND e.kind = 'DEBIT'
     AND e.idempotency_key = 'd-' || :client_id || '-' || :n;
WITH account AS (UPDATE wallet.accounts SET balance = balance - 120000, updated_at = now()
                 WHERE user_id = 'ceiling-' || :u)
INSERT INTO wallet.ledger_entries (user_id, kind, amount, balance_after, idempotency_key, debit_key)
VALUES ('ceiling-' || :u, 'DEBIT', 120000, 1, 'd-' || :client_id || '-' || :n, NULL)
RETURNING entry_id;
COMMIT;
