-- A settlement run's late rows: those of its period in hours before its previous cutoff.
CREATE INDEX IF NOT EXISTS rollup_lineage_period ON rollup_lineage (period, hour_no)
