-- The known transaction kinds, now with 'expiry' (lots expired into coalition:breakage) and
-- the campaign kinds 'bonus' and 'bonus_reversal' (issue 7).
ALTER TABLE transactions ADD CONSTRAINT transactions_kind_known
    CHECK (kind IN ('award', 'redeem', 'authorize', 'capture', 'release', 'reversal', 'bonus', 'bonus_reversal', 'expiry'))
