-- A user may hold at most MAX_HOLDS_PER_USER seats of one concert at a time (ticket sites'
-- anti-hoarding rule). Each live hold takes one numbered slot 1..=limit of its user and
-- concert; the unique index makes the limit hold across replicas and concurrent requests
-- without a lock: a hold that finds no free slot (or loses a race for one) inserts nothing.
-- A slot is freed when its hold stops being HELD (paid, cancelled, expired). Rows from before
-- this column have no slot and are not counted.
ALTER TABLE reservations ADD COLUMN hold_slot SMALLINT CHECK (hold_slot > 0);
CREATE UNIQUE INDEX reservations_hold_slots
    ON reservations (user_id, concert_id, hold_slot) WHERE status = 'HELD';
