-- CockroachDB's name for the inline kind CHECK of 0003 (see 0300 and 0207).
ALTER TABLE transactions DROP CONSTRAINT IF EXISTS check_kind
