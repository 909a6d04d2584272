// Package partners owns the coalition's calls to partner systems (DESIGN.md §6): the Registry
// of per-partner clients (one gobreaker circuit breaker per partner and operation, a deadline
// in every call, retries only for calls carrying our idempotency key, a bulkhead per partner),
// the pure classification of call errors, the outbox Dispatcher that delivers events in order
// per partner, and the Exchanger that converts points into a partner's own program.
//
// It must not speak SQL (it reaches the books through the small interfaces it defines, which
// settlement/sqlstore implements) and must never call a partner while a database transaction
// is open. Its generated protobuf types stay inside it.
package partners
