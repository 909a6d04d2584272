-- The partner's outstanding-value allowance, split into shards: an award takes its value from
-- one shard (several only near the limit), award reversals and settled periods give it back.
-- available may go below zero when a limit is lowered under what is already outstanding.
CREATE TABLE IF NOT EXISTS exposure_shards (
    partner_id TEXT NOT NULL,
    shard      INT8 NOT NULL,
    available  DECIMAL(30, 8) NOT NULL,
    PRIMARY KEY (partner_id, shard)
)
