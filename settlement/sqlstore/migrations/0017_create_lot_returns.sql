-- Lineage of redemption reversals: which lots (issuers) each reversal gave points back to.
CREATE TABLE IF NOT EXISTS lot_returns (
    txn_id UUID NOT NULL,
    lot_id UUID NOT NULL,
    issuer TEXT NOT NULL,
    points INT8 NOT NULL CHECK (points > 0),
    PRIMARY KEY (txn_id, lot_id)
)
