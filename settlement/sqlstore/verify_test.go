package sqlstore_test

import (
	"slices"
	"testing"

	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// seedBooks writes a little of everything, so every invariant has rows to check.
func (e *env) seedBooks(t *testing.T) (awardID string) {
	t.Helper()
	a := e.must(t, award(acme, "m-1", "a-1", 500))
	r := e.must(t, redeem(bean, "m-1", "r-1", 120))
	e.must(t, reverse(bean, "rev-1", r.Transaction.ID, 20))
	h := e.must(t, authorize(bean, "m-1", "h-1", 50))
	e.must(t, capture(bean, "c-1", h.Hold.ID, 30))
	e.must(t, authorize(bean, "m-1", "h-2", 40)) // left open
	e.must(t, award(bean, "m-2", "a-2", 70))
	return a.Transaction.ID
}

func TestVerifyDetectsTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper string
		want   []string // checks that must report
	}{
		{"posted edited", `UPDATE members SET posted = posted + 1 WHERE id = 'm-1'`, []string{
			"member posted balance equals its entries", "lots remaining minus debt equals posted"}},
		{"held edited", `UPDATE members SET held = held + 1 WHERE id = 'm-1'`, []string{
			"member held equals its open holds and its holds account"}},
		{"entry edited", `UPDATE entries SET amount = amount + 1 WHERE account = 'member:m-2'`, []string{
			"entries of each transaction sum to zero", "member posted balance equals its entries"}},
		{"entries deleted", `DELETE FROM entries WHERE txn_id = (SELECT id FROM transactions WHERE idempotency_key = 'a-2')`, []string{
			"every transaction has entries", "member posted balance equals its entries"}},
		{"lot edited", `UPDATE lots SET remaining = remaining - 1 WHERE member_id = 'm-2'`, []string{
			"lots remaining minus debt equals posted", "issued - reversed = outstanding + redeemed + expired"}},
		{"lineage edited", `UPDATE lot_consumptions SET points = points + 1`, []string{
			"redemptions are fully traced to lots", "issued - reversed = outstanding + redeemed + expired"}},
		{"key with two effects", `UPDATE transactions SET idempotency_key = 'r-1' WHERE idempotency_key = 'h-2'`, []string{
			"no idempotency key with two effects"}},
		{"overdrawn", `UPDATE members SET held = held + 1000 WHERE id = 'm-2'`, []string{
			"member held equals its open holds and its holds account",
			"no available balance below zero unless from a reversed award"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, envConfig{skipVerify: true})
			e.seedBooks(t)
			e.verify(t) // sound before
			if _, err := e.pool.Exec(ctxFor(t), tt.tamper); err != nil {
				t.Fatalf("tamper: %v", err)
			}
			violations, err := e.store.Verify(ctxFor(t))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got := checks(violations); !slices.Equal(got, tt.want) {
				t.Errorf("violated checks: got %q, want %q (%+v)", got, tt.want, violations)
			}
		})
	}
}

// checks returns the distinct checks among violations, in Verify's order.
func checks(vs []sqlstore.Violation) []string {
	var out []string
	for _, v := range vs {
		if !slices.Contains(out, v.Check) {
			out = append(out, v.Check)
		}
	}
	return out
}
