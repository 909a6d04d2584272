// Package settlement owns the books: the domain types of the points ledger (transactions,
// balances, holds, lots), the validation and fingerprinting of partner commands, the domain
// errors, and the Ledger that applies commands exactly once through a Store.
//
// It must not speak SQL (that is settlement/sqlstore), know about gRPC or protobuf (that is
// gateway), or call anything outside the database while a transaction is open.
package settlement
