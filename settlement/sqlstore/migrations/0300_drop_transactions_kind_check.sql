-- Issue 7 adds the transaction kind 'expiry'. The inline CHECK of 0003 is named
-- transactions_kind_check on PostgreSQL; 0206 (campaigns) already drops it, so this is a no-op
-- there, kept so that this block stands on its own. 0302 adds the replacing constraint.
ALTER TABLE transactions DROP CONSTRAINT IF EXISTS transactions_kind_check
