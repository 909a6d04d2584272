-- A settlement run's late rows: those of its period in hours before its previous cutoff.
CREATE INDEX IF NOT EXISTS rollup_flows_period ON rollup_flows (period, hour_no)
