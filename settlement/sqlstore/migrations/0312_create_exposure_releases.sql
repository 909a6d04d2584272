-- Settled periods whose issuance has been given back to the allowance shards (once each).
CREATE TABLE IF NOT EXISTS exposure_releases (
    period      INT8 PRIMARY KEY,
    released_at TIMESTAMPTZ NOT NULL
)
