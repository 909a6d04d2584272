-- Exchanges of coalition points into partner programs. The id derives from (caller, key), so
-- the primary key is also the idempotency constraint. The points themselves live in the
-- ledger (a hold placed, captured or voided under keys derived from the id).
CREATE TABLE IF NOT EXISTS exchanges (
    id                TEXT PRIMARY KEY,
    caller            TEXT NOT NULL,
    idempotency_key   TEXT NOT NULL,
    member_id         TEXT NOT NULL,
    to_partner        TEXT NOT NULL,
    points            INT8 NOT NULL CHECK (points > 0),
    units             INT8 NOT NULL CHECK (units > 0),
    state             TEXT NOT NULL CHECK (state IN ('pending', 'completed', 'rejected', 'failed')),
    hold_id           UUID,
    partner_credit_id TEXT NOT NULL DEFAULT '',
    detail            TEXT NOT NULL DEFAULT '',
    attempts          INT8 NOT NULL DEFAULT 0,
    next_attempt_at   TIMESTAMPTZ NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL
)
