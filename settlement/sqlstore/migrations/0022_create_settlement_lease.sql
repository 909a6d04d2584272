-- One settlement run at a time across replicas: a lease row with an expiry.
CREATE TABLE IF NOT EXISTS settlement_lease (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
)
