-- The admission round that let each token in, numbered from one sequence in the order
-- rounds ran: rounds are serialized by the admission lock, so this orders admissions across
-- replicas (activated_at is the admitting replica's clock and cannot). ExportTokens reports
-- it for FIFO audits. Nullable without a default: adding it rewrites no rows.
CREATE SEQUENCE admission_rounds;
ALTER TABLE tokens ADD COLUMN admission_round BIGINT;
