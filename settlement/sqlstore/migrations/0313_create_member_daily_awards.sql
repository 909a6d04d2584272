-- Points a partner awarded a member per UTC day, counted only while the partner has a
-- per-member daily limit. One row per (member, partner, day): no row shared by members.
CREATE TABLE IF NOT EXISTS member_daily_awards (
    member_id  TEXT NOT NULL,
    partner_id TEXT NOT NULL,
    day        DATE NOT NULL,
    points     INT8 NOT NULL,
    PRIMARY KEY (member_id, partner_id, day)
)
