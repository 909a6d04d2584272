-- The transactional outbox: one row per (event, receiving partner), inserted in the same
-- transaction as the ledger change that causes it. Random UUID keys spread the inserts.
CREATE TABLE IF NOT EXISTS outbox_events (
    id              UUID PRIMARY KEY,
    partner_id      TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    member_id       TEXT NOT NULL,
    points          INT8 NOT NULL,
    at_partner_id   TEXT NOT NULL,
    txn_id          UUID NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INT8 NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    last_error      TEXT NOT NULL DEFAULT '',
    delivered_at    TIMESTAMPTZ
)
