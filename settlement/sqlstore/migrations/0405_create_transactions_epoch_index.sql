-- The roll-up worker reads one sealed epoch's transactions, and a settlement run the few of
-- the epochs not rolled up yet.
CREATE INDEX IF NOT EXISTS transactions_epoch ON transactions (epoch)
