-- Double entry: the amounts of one transaction sum to zero. Append-only.
CREATE TABLE IF NOT EXISTS entries (
    txn_id     UUID NOT NULL,
    seq        INT8 NOT NULL,
    account    TEXT NOT NULL,
    amount     INT8 NOT NULL CHECK (amount <> 0),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (txn_id, seq)
)
