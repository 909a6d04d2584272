-- The rolled-up epochs' partner flows (awards, redemptions, captures, partner expiries; not
-- reversals), by hour of created_at (hour_no h holds ((h-1)·1h, h·1h] since 1970) and
-- settlement period, as settlement's flows query groups them. Each epoch's sums are added
-- once, in the transaction that marks it in rollup_epochs.
CREATE TABLE IF NOT EXISTS rollup_flows (
    hour_no       INT8 NOT NULL,
    period        INT8 NOT NULL,
    partner_id    TEXT NOT NULL,
    kind          TEXT NOT NULL,
    price_version INT8 NOT NULL,
    points        INT8 NOT NULL,
    txns          INT8 NOT NULL,
    PRIMARY KEY (hour_no, period, partner_id, kind, price_version)
)
