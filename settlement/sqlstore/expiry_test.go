package sqlstore_test

import (
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// termsWith registers partner with its price terms, including a breakage share and limits.
func (e *env) termsWith(t *testing.T, partner, issue, reimb, share string, limits settlement.Limits) {
	t.Helper()
	if _, err := e.store.EnsurePartner(ctxFor(t), settlement.Partner{ID: partner, Name: partner}); err != nil {
		t.Fatal(err)
	}
	terms := settlement.PriceTerms{PartnerID: partner, Currency: "EUR", IssuePrice: decimal(t, issue),
		ReimbursementRate: decimal(t, reimb), BreakageShare: decimal(t, share), Limits: limits}
	if _, err := e.store.SetPriceTerms(ctxFor(t), terms, e.clock.Now()); err != nil {
		t.Fatalf("SetPriceTerms %s: %v", partner, err)
	}
}

// clockedStore is a second Store on e's database whose balance reads use e's clock.
func (e *env) clockedStore(t *testing.T) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.New(sqlstore.Config{Pool: e.pool, LotLifetime: 90 * day, Logger: quiet, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (e *env) expiringSoon(t *testing.T, s *sqlstore.Store, member string) int64 {
	t.Helper()
	b, err := s.Balance(ctxFor(t), member)
	if err != nil {
		t.Fatal(err)
	}
	return b.ExpiringSoon
}

// TestLotsExpireIntoBreakage: lots expire at their time (moved by the injected clock), never
// before; expired points are never redeemable, even before the sweeper ran; balances and the
// breakage account agree; the breakage share returns to the issuer at its issue price in
// settlement; and every ledger invariant holds (newEnv verifies at cleanup).
func TestLotsExpireIntoBreakage(t *testing.T) {
	e := newEnv(t, envConfig{lotLifetime: 90 * day})
	e.termsWith(t, acme, "0.0100", "0.0080", "0.5", settlement.Limits{})
	e.termsWith(t, bean, "0.0120", "0.0090", "0", settlement.Limits{})
	e.termsWith(t, fuel, "0.0110", "0.0085", "0", settlement.Limits{})
	s := e.clockedStore(t)
	ctx := ctxFor(t)

	a := e.must(t, award(acme, "M-1", "a", 1000)) // expires t0+90d
	e.clock.Advance(10 * day)
	e.must(t, award(bean, "M-1", "b", 500))  // expires t0+100d
	e.must(t, redeem(fuel, "M-1", "r", 300)) // from the acme lot: 700 left
	if got := e.expiringSoon(t, s, "M-1"); got != 0 {
		t.Errorf("expiring soon at t0+10d: got %d, want 0", got)
	}
	e.clock.Advance(55 * day) // t0+65d: the acme lot expires within 30 days, the bean lot not
	if got := e.expiringSoon(t, s, "M-1"); got != 700 {
		t.Errorf("expiring soon at t0+65d: got %d, want 700", got)
	}
	if _, err := e.pool.Exec(ctx, `INSERT INTO partner_subscriptions (partner_id, event_type) VALUES ($1, $2)`, bean, settlement.EventPointsExpiring); err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{1, 0} { // once per lot
		if n, err := e.store.NotifyExpiring(ctx, e.clock.Now(), 30*day, 10); err != nil || n != want {
			t.Errorf("NotifyExpiring #%d: got (%d, %v), want %d", i+1, n, err, want)
		}
	}
	if got := e.queryInt(t, `SELECT COALESCE(sum(points), 0) FROM outbox_events WHERE event_type = $1 AND partner_id = $2 AND txn_id = $3`,
		settlement.EventPointsExpiring, bean, a.Transaction.ID); got != 700 {
		t.Errorf("points.expiring event points: got %d, want 700", got)
	}

	e.clock.Advance(25*day - time.Second) // one second before the acme lot's expiry
	if n, err := e.store.ExpireLots(ctx, e.clock.Now(), 10); err != nil || n != 0 {
		t.Fatalf("ExpireLots before expiry: got (%d, %v), want 0", n, err)
	}
	e.clock.Advance(time.Second)
	e.fails(t, redeem(fuel, "M-1", "r-expired", 501), settlement.ErrInsufficientPoints) // not swept yet
	if n, err := e.store.ExpireLots(ctx, e.clock.Now(), 10); err != nil || n != 1 {
		t.Fatalf("ExpireLots at expiry: got (%d, %v), want 1", n, err)
	}
	e.wantBalance(t, "M-1", 500, 0)
	if got := e.queryInt(t, `SELECT COALESCE(sum(amount), 0) FROM entries WHERE account = 'coalition:breakage'`); got != 700 {
		t.Errorf("breakage account: got %d, want 700", got)
	}
	if got := e.lotExpired(t, a.Transaction.ID); got != 700 {
		t.Errorf("lot expired: got %d, want 700", got)
	}
	if n, err := e.store.ExpireLots(ctx, e.clock.Now(), 10); err != nil || n != 0 {
		t.Errorf("ExpireLots again: got (%d, %v), want 0", n, err)
	}
	e.fails(t, redeem(fuel, "M-1", "r-more", 501), settlement.ErrInsufficientPoints)
	e.must(t, redeem(fuel, "M-1", "r-rest", 500))
	e.verify(t)

	cutoff := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	rec := e.settle(t, cutoff)
	// acme: -10.00 issuance + 700 × 0.0100 × 0.5 = 3.50 breakage return; fuel: 800 × 0.0085.
	wantNets(t, rec, map[string]string{acme: "-6.50", bean: "-6.00", fuel: "6.80", "operator": "5.70"})
}

// TestExpiryPaysDebtFirst: a member in debt (a reversed award whose points were spent) loses
// only what the expiring lot holds beyond the debt.
func TestExpiryPaysDebtFirst(t *testing.T) {
	e := newEnv(t, envConfig{lotLifetime: 90 * day})
	e.termsWith(t, acme, "0.0100", "0.0080", "0", settlement.Limits{})
	e.termsWith(t, bean, "0.0120", "0.0090", "0", settlement.Limits{})
	first := e.must(t, award(acme, "M-1", "a1", 100))
	e.must(t, redeem(bean, "M-1", "r1", 100))
	e.clock.Advance(day)
	e.must(t, award(acme, "M-1", "a2", 100))
	e.must(t, reverse(acme, "rev", first.Transaction.ID, 100)) // spent: debt 100, covered by the new lot
	e.wantBalance(t, "M-1", 0, 0)
	e.clock.Advance(90 * day)
	if _, err := e.store.ExpireLots(ctxFor(t), e.clock.Now(), 10); err != nil {
		t.Fatal(err)
	}
	e.wantBalance(t, "M-1", 0, 0)
	if got := e.queryInt(t, `SELECT count(*) FROM transactions WHERE kind = 'expiry'`); got != 0 {
		t.Errorf("expiry transactions: got %d, want 0 (the lot only paid the debt)", got)
	}
}

func (e *env) lotExpired(t *testing.T, id string) int64 {
	t.Helper()
	return e.queryInt(t, `SELECT expired FROM lots WHERE id = $1`, id)
}
