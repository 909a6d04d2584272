-- One dispatcher per partner queue at a time: a lease row per partner with an expiry, so
-- replicas share the partners instead of fighting over one row.
CREATE TABLE IF NOT EXISTS outbox_leases (
    partner_id TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
)
