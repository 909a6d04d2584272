-- The rolled-up epochs' redemption lineage by hour and period (see rollup_flows): points of
-- each issuer consumed at each redeemer, and how many redemptions drew on that issuer.
CREATE TABLE IF NOT EXISTS rollup_lineage (
    hour_no       INT8 NOT NULL,
    period        INT8 NOT NULL,
    issuer        TEXT NOT NULL,
    partner_id    TEXT NOT NULL,
    price_version INT8 NOT NULL,
    points        INT8 NOT NULL,
    redemptions   INT8 NOT NULL,
    PRIMARY KEY (hour_no, period, issuer, partner_id, price_version)
)
