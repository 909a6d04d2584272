-- Lineage: which lots (hence which issuers) a redemption or capture consumed.
CREATE TABLE IF NOT EXISTS lot_consumptions (
    txn_id   UUID NOT NULL,
    lot_id   UUID NOT NULL,
    seq      INT8 NOT NULL,
    issuer   TEXT NOT NULL,
    points   INT8 NOT NULL CHECK (points > 0),
    returned INT8 NOT NULL DEFAULT 0,
    PRIMARY KEY (txn_id, lot_id),
    CONSTRAINT lot_consumptions_returned_bound CHECK (returned >= 0 AND returned <= points)
)
