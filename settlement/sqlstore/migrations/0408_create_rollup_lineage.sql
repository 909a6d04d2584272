-- Per sealed epoch, period and hour (see rollup_flows): redemption lineage, points of each
-- issuer consumed at each redeemer, and how many redemptions drew on that issuer.
CREATE TABLE IF NOT EXISTS rollup_lineage (
    epoch         INT8 NOT NULL,
    period        INT8 NOT NULL,
    hour_no       INT8 NOT NULL,
    issuer        TEXT NOT NULL,
    partner_id    TEXT NOT NULL,
    price_version INT8 NOT NULL,
    points        INT8 NOT NULL,
    redemptions   INT8 NOT NULL,
    PRIMARY KEY (epoch, period, hour_no, issuer, partner_id, price_version)
)
