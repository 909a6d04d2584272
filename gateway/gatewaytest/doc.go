// Package gatewaytest starts the whole gateway stack for tests: a fresh database (through
// sqlstoretest), the SQL store and the settlement ledger, a dev CA, and the gateway serving
// gRPC over real mutual TLS on a loopback port, with its HTTP endpoints beside it. Tests
// call it through per-identity PointsService clients, exactly as partners do.
//
// It must not fake what it starts: no mocked store, no insecure transport. The only
// decoration is a counting wrapper around the ledger, so that a test can prove a refused
// call never reached the books.
package gatewaytest
