-- A settlement run's late rows: those of its period in hours before its previous cutoff.
CREATE INDEX IF NOT EXISTS rollup_totals_period ON rollup_totals (period, hour_no)
