-- Transactions gain the kinds bonus and bonus_reversal (campaigns, issue 7). The inline kind
-- CHECK of 0003 is named transactions_kind_check on PostgreSQL (this file) and check_kind on
-- CockroachDB (0207). 0302 adds the named constraint listing every kind, bonus kinds included.
ALTER TABLE transactions DROP CONSTRAINT IF EXISTS transactions_kind_check
