-- Where a campaign applies. Keyed by partner first: an award looks up its partner's campaigns.
CREATE TABLE IF NOT EXISTS campaign_partners (
    partner_id  TEXT NOT NULL,
    campaign_id TEXT NOT NULL,
    PRIMARY KEY (partner_id, campaign_id)
)
