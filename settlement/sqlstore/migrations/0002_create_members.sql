-- posted includes held points. debt counts points of reversed awards that had already been
-- spent; it is paid back from the member's next awards. Invariant per member:
-- sum(lots.remaining) - debt = posted.
CREATE TABLE IF NOT EXISTS members (
    id         TEXT PRIMARY KEY,
    status     TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked')),
    posted     INT8 NOT NULL DEFAULT 0,
    held       INT8 NOT NULL DEFAULT 0 CHECK (held >= 0),
    debt       INT8 NOT NULL DEFAULT 0 CHECK (debt >= 0),
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
)
