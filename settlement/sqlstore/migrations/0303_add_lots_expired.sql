-- Points of the lot taken by expiry into coalition:breakage (issue 7).
ALTER TABLE lots ADD COLUMN IF NOT EXISTS expired INT8 NOT NULL DEFAULT 0
