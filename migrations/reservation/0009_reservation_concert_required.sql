-- Every reservation names its concert, so a queue token unlocks only its own concert with no
-- exception. Rows from before 0004 take the concert other reservations of the same date
-- recorded; any left (no reservation of its date recorded one) take the nil UUID, which no
-- admission names: such a hold can only expire, such a sale stays as it is.
UPDATE reservations r SET concert_id = known.concert_id
FROM (SELECT DISTINCT ON (schedule_id) schedule_id, concert_id
      FROM reservations WHERE concert_id IS NOT NULL) AS known
WHERE r.concert_id IS NULL AND r.schedule_id = known.schedule_id;
UPDATE reservations SET concert_id = '00000000-0000-0000-0000-000000000000' WHERE concert_id IS NULL;
ALTER TABLE reservations ALTER COLUMN concert_id SET NOT NULL;
