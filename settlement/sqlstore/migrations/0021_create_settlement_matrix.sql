CREATE TABLE IF NOT EXISTS settlement_matrix (
    run_id   INT8 NOT NULL,
    issuer   TEXT NOT NULL,
    redeemer TEXT NOT NULL,
    points   INT8 NOT NULL,
    PRIMARY KEY (run_id, issuer, redeemer)
)
