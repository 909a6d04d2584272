CREATE TABLE IF NOT EXISTS transactions (
    id              UUID PRIMARY KEY,
    partner_id      TEXT NOT NULL,
    member_id       TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('award', 'redeem', 'authorize', 'capture', 'release', 'reversal')),
    points          INT8 NOT NULL CHECK (points > 0),
    reversed_points INT8 NOT NULL DEFAULT 0,
    reference       TEXT NOT NULL DEFAULT '',
    reverses_id     UUID,
    hold_id         UUID,
    reason          TEXT NOT NULL DEFAULT '',
    idempotency_key TEXT NOT NULL DEFAULT '',
    metadata        JSONB,
    price_version   INT8 NOT NULL DEFAULT 0,
    occurred_at     TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    CONSTRAINT transactions_reversed_bound CHECK (reversed_points >= 0 AND reversed_points <= points)
)
