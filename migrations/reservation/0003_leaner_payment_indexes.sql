-- Every payment row is written three times (STARTED, CONFIRMED, COMPLETED), and each write
-- changes `status`, so each is a new row version in every index: fewer indexes, less work.
-- ListPayments finds a user's rows through the (user_id, idempotency_key) unique index and
-- sorts them (a user has a handful of payments), so payments_by_user can go.
DROP INDEX payments_by_user;
