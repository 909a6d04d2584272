CREATE INDEX IF NOT EXISTS transactions_partner_member_idx
    ON transactions (partner_id, member_id, created_at DESC, id DESC)
