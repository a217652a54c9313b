-- Payment history per user (ListPayments), newest first.
CREATE INDEX payments_by_user ON payments (user_id, created_at DESC);
