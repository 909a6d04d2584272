-- Signatures of published statements (their canonical CSV bytes), by run and partner.
CREATE TABLE IF NOT EXISTS statement_signatures (
    run_id      INT8 NOT NULL,
    partner_id  TEXT NOT NULL,
    key_name    TEXT NOT NULL,
    key_version INT8 NOT NULL,
    signature   TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (run_id, partner_id)
)
