-- How much of its debt a member's latest award paid back. The award upsert returns it instead
-- of reading the old row first: under PostgreSQL's SERIALIZABLE, reading a member that does not
-- exist yet locks its index page, and every concurrent enrollment on that page then conflicts.
ALTER TABLE members ADD COLUMN IF NOT EXISTS last_repaid INT8 NOT NULL DEFAULT 0
