-- Settlement's reversal flows (a small share of transactions, grouped with the original they
-- undo) read this instead of scanning every transaction a second time.
CREATE INDEX IF NOT EXISTS transactions_reversals ON transactions (created_at) WHERE kind = 'reversal'
