// Package partnerstest runs the whole partner-call stack for tests: a fresh database, the
// ledger, the gateway over mTLS with ExchangeService and AdminService, a partners Registry,
// Dispatcher and Exchanger, and partner-sims on demand, all in-process and stopped at cleanup.
package partnerstest
