CREATE TABLE IF NOT EXISTS holds (
    id               UUID PRIMARY KEY,
    partner_id       TEXT NOT NULL,
    member_id        TEXT NOT NULL,
    points           INT8 NOT NULL CHECK (points > 0),
    captured_points  INT8 NOT NULL DEFAULT 0,
    status           TEXT NOT NULL CHECK (status IN ('open', 'captured', 'voided', 'expired')),
    authorize_txn_id UUID NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT holds_captured_bound CHECK (captured_points >= 0 AND captured_points <= points)
)
