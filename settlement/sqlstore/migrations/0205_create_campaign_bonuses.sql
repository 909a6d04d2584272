-- Links each bonus (and bonus reversal) transaction to the award that earned it, and carries
-- what settlement needs: the sponsors' shares and price versions at issuance ("id:bps:version,"
-- sorted by id), period and times, so settlement aggregates this table alone.
CREATE TABLE IF NOT EXISTS campaign_bonuses (
    award_id          UUID NOT NULL,
    txn_id            UUID NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('bonus', 'bonus_reversal')),
    campaign_id       TEXT NOT NULL,
    partner_id        TEXT NOT NULL,
    member_id         TEXT NOT NULL,
    points            INT8 NOT NULL CHECK (points > 0),
    reversed          INT8 NOT NULL DEFAULT 0,
    sponsors          TEXT NOT NULL,
    period            INT8 NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL,
    origin_created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (award_id, txn_id),
    CONSTRAINT campaign_bonuses_reversed_bound CHECK (reversed >= 0 AND reversed <= points)
)
