-- Catalog schema: what is for sale. Seat status is NOT stored here; it is read from the
-- reservation service at request time so it can never drift.

CREATE TABLE concerts (
    concert_id UUID PRIMARY KEY,
    title      TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    venue      TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE schedules (
    schedule_id UUID PRIMARY KEY,
    concert_id  UUID NOT NULL REFERENCES concerts (concert_id),
    starts_at   TIMESTAMPTZ NOT NULL,
    total_seats INTEGER NOT NULL CHECK (total_seats = 50),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX schedules_by_concert ON schedules (concert_id, starts_at);

CREATE TABLE seats (
    schedule_id UUID NOT NULL REFERENCES schedules (schedule_id),
    seat_number INTEGER NOT NULL CHECK (seat_number BETWEEN 1 AND 50),
    grade       TEXT NOT NULL,
    -- Won.
    price       BIGINT NOT NULL CHECK (price BETWEEN 1 AND 10000000),
    PRIMARY KEY (schedule_id, seat_number)
);
