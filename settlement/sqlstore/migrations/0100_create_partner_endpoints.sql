-- How the coalition calls a partner's PartnerProgramService (issue 4). One row per partner,
-- written by operators only: never on a request's path.
CREATE TABLE IF NOT EXISTS partner_endpoints (
    partner_id          TEXT PRIMARY KEY,
    endpoint            TEXT NOT NULL,
    server_name         TEXT NOT NULL DEFAULT '',
    call_timeout_ms     INT8 NOT NULL CHECK (call_timeout_ms > 0),
    exchange_timeout_ms INT8 NOT NULL CHECK (exchange_timeout_ms > 0),
    max_in_flight       INT8 NOT NULL CHECK (max_in_flight > 0),
    ratio_units         INT8 NOT NULL CHECK (ratio_units > 0),
    ratio_points        INT8 NOT NULL CHECK (ratio_points > 0),
    updated_at          TIMESTAMPTZ NOT NULL
)
