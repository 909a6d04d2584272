-- Bonus points each member has earned from a campaign (net of reversals), against its cap.
CREATE TABLE IF NOT EXISTS campaign_member_caps (
    campaign_id TEXT NOT NULL,
    member_id   TEXT NOT NULL,
    awarded     INT8 NOT NULL CHECK (awarded >= 0),
    PRIMARY KEY (campaign_id, member_id)
)
