-- Which transaction last changed a token's place in line: the one that inserted it, or the
-- last one that changed its state. A replica keeps the line in memory and, instead of
-- re-reading every WAITING token on each refresh, reads only the tokens whose change
-- committed since its previous read: those whose `changed_in` is not visible in the
-- snapshot that read was taken in (pg_visible_in_snapshot), found through the index from
-- that snapshot's xmin up. Commit order, not xid order, decides what a read saw, so this
-- is exact even when transactions commit out of order. xid8 never wraps around.
--
-- Adding a column with a volatile default rewrites the table once (the existing rows get
-- this migration's transaction id, visible to every later snapshot).
ALTER TABLE tokens ADD COLUMN changed_in xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX tokens_by_change ON tokens (changed_in);

-- Every state change stamps the row, whichever statement makes it (admission, leaving,
-- idle expiry, paid tokens): a change that forgot to would be missing from every
-- replica's line until it restarts.
CREATE FUNCTION tokens_stamp_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.changed_in := pg_current_xact_id();
    RETURN NEW;
END $$;
CREATE TRIGGER tokens_stamp_change BEFORE UPDATE OF state ON tokens
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION tokens_stamp_change();
