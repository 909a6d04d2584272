-- The open settlement period, in shards: every ledger transaction reads one shard FOR SHARE
-- and stamps its transaction with the open period; closing a period updates every shard,
-- which waits for the transactions that read the old value. No transaction of a closed period
-- can commit after the close, and no single row is locked by every request.
CREATE TABLE IF NOT EXISTS settlement_state (
    shard       INT8 PRIMARY KEY,
    open_period INT8 NOT NULL
)
