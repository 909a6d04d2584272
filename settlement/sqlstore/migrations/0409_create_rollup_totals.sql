-- Per sealed epoch, period and hour (see rollup_flows): the sum of the partner and campaign
-- accounts' entries, for settlement's ledger totals.
CREATE TABLE IF NOT EXISTS rollup_totals (
    epoch   INT8 NOT NULL,
    period  INT8 NOT NULL,
    hour_no INT8 NOT NULL,
    account TEXT NOT NULL,
    amount  INT8 NOT NULL,
    PRIMARY KEY (epoch, period, hour_no, account)
)
