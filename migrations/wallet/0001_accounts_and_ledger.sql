-- Wallet schema: one account row per user and an append-only ledger.
-- Rules enforced here as well as in code: a balance never goes below 0, an entry's amount is
-- positive, and (user_id, idempotency_key) identifies one request.

CREATE TABLE accounts (
    user_id    TEXT PRIMARY KEY,
    balance    BIGINT NOT NULL DEFAULT 0 CHECK (balance >= 0),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE ledger_entries (
    entry_id        BIGSERIAL PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES accounts (user_id),
    kind            TEXT NOT NULL CHECK (kind IN ('CHARGE', 'DEBIT', 'REFUND')),
    amount          BIGINT NOT NULL CHECK (amount > 0),
    balance_after   BIGINT NOT NULL CHECK (balance_after >= 0),
    idempotency_key TEXT NOT NULL,
    -- For a REFUND: the idempotency key of the DEBIT it gives back.
    debit_key       TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (user_id, idempotency_key),
    CHECK ((kind = 'REFUND') = (debit_key IS NOT NULL))
);

CREATE INDEX ledger_entries_user_recent ON ledger_entries (user_id, entry_id DESC);
CREATE INDEX ledger_entries_refunds ON ledger_entries (user_id, debit_key) WHERE kind = 'REFUND';

-- The ledger is append-only: history is corrected by new entries, never rewritten.
CREATE FUNCTION ledger_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only (% refused)', TG_OP;
END;
$$;

CREATE TRIGGER ledger_entries_append_only
    BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_append_only();
