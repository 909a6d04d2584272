// Package partnersim is a simulated partner system: a PartnerProgramService that records what
// it applied, deduplicates credits by idempotency key and events by id, and fails, slows down
// or hangs on demand. Tests run it in-process; `coalition partner-sim` serves it over mTLS.
//
// It must not touch the coalition's books: it is the other side of the wire.
package partnersim
