// Package localpg starts and stops a local database server for `coalition dev`
// and for tests.
//
// It owns exactly one thing: the lifecycle of a single-node server process
// listening on loopback. That is a PostgreSQL cluster in a data directory
// (initdb on first use, kept across restarts), or, when asked and a
// `cockroach` binary is on PATH, an in-memory CockroachDB node. The server runs
// as a direct child of the calling process (never via pg_ctl or a system
// service) so that it is stopped with its parent: Stop shuts it down cleanly,
// a parent-death signal covers a parent that is killed, and a later Start on
// the same directory stops a postmaster left behind by a killed parent.
//
// Every PostgreSQL server it starts runs with
// default_transaction_isolation=serializable so that tests see the same
// isolation level (and the same SQLSTATE 40001 retries) as CockroachDB.
//
// When the calling process is root, PostgreSQL (which refuses to run as root)
// is run as the unprivileged user "nobody", and the data directory is handed
// to that user.
//
// What it must not do: create schemas, run migrations or issue any SQL beyond
// CREATE DATABASE. Schema belongs to the sqlstore package and its migrations;
// this package only provides a server to run them against.
package localpg
