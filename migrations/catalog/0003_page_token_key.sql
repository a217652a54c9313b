-- The key that signs this service's page tokens (HMAC-SHA256, platform::paging): made once
-- per deployment here, so every replica signs and checks alike and no operator provisions a
-- secret. Two version-4 UUIDs give 244 bits from PostgreSQL's strong random source.
CREATE TABLE page_token_key (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    key bytea NOT NULL CHECK (octet_length(key) = 32)
);
INSERT INTO page_token_key (key) VALUES (uuid_send(gen_random_uuid()) || uuid_send(gen_random_uuid()));
