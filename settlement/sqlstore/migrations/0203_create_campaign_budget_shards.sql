-- A campaign's budget, split over shards so concurrent awards do not all update one row. An
-- award takes from one random shard with a conditional UPDATE, from several only when that one
-- cannot cover it.
CREATE TABLE IF NOT EXISTS campaign_budget_shards (
    campaign_id TEXT NOT NULL,
    shard       INT8 NOT NULL,
    remaining   INT8 NOT NULL CHECK (remaining >= 0),
    PRIMARY KEY (campaign_id, shard)
)
