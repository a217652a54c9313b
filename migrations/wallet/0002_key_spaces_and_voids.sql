-- Users choose the keys of their charges; the payment saga derives the keys of its debits and
-- refunds. Each kind has its own key space, so no key a user picks can ever collide with (and
-- so block or pre-empt) a saga key.
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_user_id_idempotency_key_key;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_one_entry_per_key UNIQUE (user_id, kind, idempotency_key);

-- A debit key whose refund arrived before any debit ("nothing to give back"): the saga gave
-- the payment up, so a debit that arrives later under this key (a retry that was still on
-- its way) is refused instead of taking money for a seat that is no longer held. This is the
-- "empty rollback" record of try-confirm-cancel protocols.
CREATE TABLE voided_debits (
    user_id   TEXT NOT NULL REFERENCES accounts (user_id),
    debit_key TEXT NOT NULL,
    voided_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, debit_key)
);
