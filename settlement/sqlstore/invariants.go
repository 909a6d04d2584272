package sqlstore

// InvariantChecks returns the names of the checks Verify runs, in the order it runs them, so a
// caller (`coalition verify`) can report every check, passed or not: Verify returns only the
// violations, each naming its check in Violation.Check.
func InvariantChecks() []string {
	out := make([]string, len(invariants))
	for i, inv := range invariants {
		out[i] = inv.check
	}
	return out
}
