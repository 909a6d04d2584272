// Package sqlstore is the only package that speaks SQL. It implements settlement.Store on
// CockroachDB (production) and PostgreSQL (tests and `coalition dev`) through pgx v5, with
// embedded forward-only migrations and one transaction runner that retries serialization
// failures with a bound and backoff.
//
// It writes only the CockroachDB-compatible subset of SQL (DESIGN.md §8): no sequences, triggers,
// PL/pgSQL, advisory locks or LISTEN/NOTIFY; one DDL statement per migration. Transaction
// closures touch only the database, because they re-run on retry.
package sqlstore
