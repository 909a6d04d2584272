-- A partner's own records for a run's period, for reconciliation.
CREATE TABLE IF NOT EXISTS partner_records (
    run_id      INT8 NOT NULL,
    partner_id  TEXT NOT NULL,
    line        INT8 NOT NULL,
    reference   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    member_id   TEXT NOT NULL,
    points      INT8 NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, partner_id, line)
)
