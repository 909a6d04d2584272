// Package ledgergen generates a large, consistent ledger directly in SQL (INSERT … SELECT over
// generate_series), shaped like the rows settlement/sqlstore writes — transactions stamped with
// period and price version, two entries each, lots for awards, lineage for redemptions, a few
// reversals with their lineage returned — for `coalition bench-settlement`. It owns no schema
// and must never run against a database that serves partners.
package ledgergen
