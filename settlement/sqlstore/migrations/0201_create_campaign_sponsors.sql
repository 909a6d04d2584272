-- Who funds a campaign's bonuses, in basis points summing to exactly 10000 (checked on create).
CREATE TABLE IF NOT EXISTS campaign_sponsors (
    campaign_id TEXT NOT NULL,
    partner_id  TEXT NOT NULL,
    share_bps   INT8 NOT NULL CHECK (share_bps > 0 AND share_bps <= 10000),
    PRIMARY KEY (campaign_id, partner_id)
)
