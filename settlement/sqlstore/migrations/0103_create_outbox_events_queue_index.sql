-- A partner's queue in delivery order: the dispatcher reads the head of (partner, pending).
CREATE INDEX IF NOT EXISTS outbox_events_queue ON outbox_events (partner_id, state, created_at, id)
