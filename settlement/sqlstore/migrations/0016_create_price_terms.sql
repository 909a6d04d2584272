-- Versioned, effective-dated price book. Versions of one partner never change once written.
CREATE TABLE IF NOT EXISTS price_terms (
    partner_id         TEXT NOT NULL,
    version            INT8 NOT NULL,
    effective_at       TIMESTAMPTZ NOT NULL,
    issue_price        DECIMAL(20, 8) NOT NULL CHECK (issue_price >= 0),
    reimbursement_rate DECIMAL(20, 8) NOT NULL CHECK (reimbursement_rate >= 0),
    fee_bps            INT8 NOT NULL DEFAULT 0 CHECK (fee_bps >= 0 AND fee_bps <= 10000),
    currency           TEXT NOT NULL,
    breakage_share     DECIMAL(9, 8) NOT NULL DEFAULT 0 CHECK (breakage_share >= 0 AND breakage_share <= 1),
    created_at         TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (partner_id, version)
)
