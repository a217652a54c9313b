-- Seat maps follow holds and sales live (CatalogService.WatchSeats, issue #30).
--
-- Every statement that takes or frees a seat announces the seat's schedule on the channel
-- `reservation_seat_changes` (payload: the schedule id). Each reservation replica LISTENs on
-- one direct connection and re-reads only the watched schedules that changed
-- (service/seat_feed.rs). A trigger, not an explicit NOTIFY in each statement, so that no
-- statement that changes a reservation's status can forget to announce it, now or later.
--
-- NOTIFY is transactional: listeners hear it only when the change commits, never for a rolled
-- back hold. PostgreSQL folds identical notifications of one transaction into one, so a
-- batch of holds on one date announces that date once. Row-level, because a transition table
-- cannot serve INSERT and UPDATE in one trigger and the rows changed per statement are few.
CREATE FUNCTION notify_seat_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('reservation_seat_changes', NEW.schedule_id::text);
    RETURN NULL;
END
$$;

-- A new hold takes a seat.
CREATE TRIGGER reservations_seat_taken
    AFTER INSERT ON reservations
    FOR EACH ROW EXECUTE FUNCTION notify_seat_change();

-- Confirmed, cancelled, expired, given back: a status change frees or sells a seat. Updates
-- of other columns (none today) announce nothing.
CREATE TRIGGER reservations_seat_changed
    AFTER UPDATE OF status ON reservations
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION notify_seat_change();
