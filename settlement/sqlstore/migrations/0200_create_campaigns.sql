-- Co-branded campaigns (issue 7). Written by operators only, read by every award at a
-- participating partner: never written on a request's path (budget and caps have their own rows).
CREATE TABLE IF NOT EXISTS campaigns (
    id                 TEXT PRIMARY KEY,
    name               TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('active', 'paused', 'ended')),
    starts_at          TIMESTAMPTZ NOT NULL,
    ends_at            TIMESTAMPTZ NOT NULL,
    multiplier         DECIMAL(12, 4),
    fixed_bonus_points INT8,
    min_base_points    INT8 NOT NULL DEFAULT 0 CHECK (min_base_points >= 0),
    member_cap_points  INT8 NOT NULL DEFAULT 0 CHECK (member_cap_points >= 0),
    budget_points      INT8 NOT NULL CHECK (budget_points > 0),
    lot_lifetime_ms    INT8 NOT NULL DEFAULT 0 CHECK (lot_lifetime_ms >= 0),
    created_at         TIMESTAMPTZ NOT NULL,
    CONSTRAINT campaigns_window CHECK (ends_at > starts_at),
    CONSTRAINT campaigns_one_rule CHECK ((multiplier IS NULL) <> (fixed_bonus_points IS NULL))
)
