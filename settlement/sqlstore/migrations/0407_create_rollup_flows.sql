-- Per sealed epoch, settlement period and hour of created_at (hour_no h holds the times in
-- ((h-1) h, h h], counted in hours since 1970): partner flows of awards, redemptions, captures
-- and partner expiries, as settlement's flows query groups them. Reversals are not rolled up.
CREATE TABLE IF NOT EXISTS rollup_flows (
    epoch         INT8 NOT NULL,
    period        INT8 NOT NULL,
    hour_no       INT8 NOT NULL,
    partner_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    price_version INT8 NOT NULL,
    points        INT8 NOT NULL,
    txns          INT8 NOT NULL,
    PRIMARY KEY (epoch, period, hour_no, partner_id, kind, price_version)
)
