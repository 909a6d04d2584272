-- A lot is the batch of points one award credited. remaining never exceeds what is left of
-- the award after its reversals.
CREATE TABLE IF NOT EXISTS lots (
    id            UUID PRIMARY KEY,
    member_id     TEXT NOT NULL,
    issuer        TEXT NOT NULL,
    partner_id    TEXT NOT NULL,
    points        INT8 NOT NULL CHECK (points > 0),
    reversed      INT8 NOT NULL DEFAULT 0,
    remaining     INT8 NOT NULL,
    price_version INT8 NOT NULL DEFAULT 0,
    expires_at    TIMESTAMPTZ NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    CONSTRAINT lots_reversed_bound CHECK (reversed >= 0 AND reversed <= points),
    CONSTRAINT lots_remaining_bound CHECK (remaining >= 0 AND remaining <= points - reversed)
)
