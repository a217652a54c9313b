-- The concert of each hold, from the catalog at hold time: a queue token unlocks only its own
-- concert, so paying or cancelling with a token of another concert is refused. NULL for
-- holds placed before this column existed (they are checked by owner only).
ALTER TABLE reservations ADD COLUMN concert_id UUID;
