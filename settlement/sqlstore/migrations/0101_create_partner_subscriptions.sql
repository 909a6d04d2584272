-- Which event types each partner receives through the outbox.
CREATE TABLE IF NOT EXISTS partner_subscriptions (
    partner_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    PRIMARY KEY (partner_id, event_type)
)
