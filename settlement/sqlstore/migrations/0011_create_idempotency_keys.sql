-- One row per (partner, key): the effect and this row commit in the same transaction.
-- outcome holds the original response; error_reason/error_message a recorded business error.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    partner_id    TEXT NOT NULL,
    key           TEXT NOT NULL,
    op            TEXT NOT NULL,
    fingerprint   BYTEA NOT NULL,
    outcome       JSONB,
    error_reason  TEXT,
    error_message TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (partner_id, key)
)
