-- The rolled-up epochs' partner and campaign account totals by hour and period (see
-- rollup_flows), for settlement's ledger totals.
CREATE TABLE IF NOT EXISTS rollup_totals (
    hour_no INT8 NOT NULL,
    period  INT8 NOT NULL,
    account TEXT NOT NULL,
    amount  INT8 NOT NULL,
    PRIMARY KEY (hour_no, period, account)
)
