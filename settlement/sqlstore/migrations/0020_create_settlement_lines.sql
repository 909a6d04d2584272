CREATE TABLE IF NOT EXISTS settlement_lines (
    run_id        INT8 NOT NULL,
    partner_id    TEXT NOT NULL,
    line_no       INT8 NOT NULL,
    kind          TEXT NOT NULL,
    counterparty  TEXT NOT NULL,
    price_version INT8 NOT NULL,
    points        INT8 NOT NULL,
    rate          DECIMAL(20, 8) NOT NULL,
    amount        DECIMAL(24, 2) NOT NULL,
    late          BOOL NOT NULL,
    transactions  INT8 NOT NULL,
    PRIMARY KEY (run_id, partner_id, line_no)
)
