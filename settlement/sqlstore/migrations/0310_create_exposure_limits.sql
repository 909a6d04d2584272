-- Per partner: the outstanding-value limit its allowance shards were provisioned for, and
-- whether the 80% alert is raised. Written when the limit changes and by the sweeper, never
-- by every award.
CREATE TABLE IF NOT EXISTS exposure_limits (
    partner_id  TEXT PRIMARY KEY,
    provisioned DECIMAL(30, 8) NOT NULL,
    alerted     BOOL NOT NULL DEFAULT false,
    updated_at  TIMESTAMPTZ NOT NULL
)
