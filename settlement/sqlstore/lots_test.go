package sqlstore_test

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

const day = 24 * time.Hour

func wantLineage(t *testing.T, got, want []consumption) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("lineage:\n got %+v\nwant %+v", got, want)
	}
}

func (e *env) wantLot(t *testing.T, id string, reversed, remaining int64) {
	t.Helper()
	if l := e.lot(t, id); l.reversed != reversed || l.remained != remaining {
		t.Errorf("lot %s: got reversed %d remaining %d, want reversed %d remaining %d", id, l.reversed, l.remained, reversed, remaining)
	}
}

// TestLotsConsumedSoonestExpiringFirst builds lots whose expiry order differs from their
// creation order (stores with different lot lifetimes on one database) and two with the same
// expiry, and checks a redemption's lineage.
func TestLotsConsumedSoonestExpiringFirst(t *testing.T) {
	e := newEnv(t, envConfig{lotLifetime: 365 * day})
	short := e.newLedger(t, newStore(t, e.pool, 30*day, sqlstore.RunnerConfig{}))
	sameExpiry := e.newLedger(t, newStore(t, e.pool, 365*day-time.Hour, sqlstore.RunnerConfig{}))
	const member = "m-lots"

	long := e.must(t, award(acme, member, "a-long", 100)) // expires t0+365d
	e.clock.Advance(time.Hour)
	shortOut, err := short.Apply(ctxFor(t), award(bean, member, "a-short", 40)) // t0+1h+30d
	if err != nil {
		t.Fatal(err)
	}
	twin, err := sameExpiry.Apply(ctxFor(t), award(bean, member, "a-twin", 50)) // t0+365d, newer than long
	if err != nil {
		t.Fatal(err)
	}
	if a, b := e.lot(t, long.Transaction.ID).expiresAt, e.lot(t, twin.Transaction.ID).expiresAt; !a.Equal(b) {
		t.Fatalf("lot expiries: got %s and %s, want equal", a, b)
	}

	r1 := e.must(t, redeem(bean, member, "r-1", 30))
	wantLineage(t, e.lineage(t, r1.Transaction.ID), []consumption{
		{LotID: shortOut.Transaction.ID, Issuer: "partner:" + bean, Points: 30},
	})
	r2 := e.must(t, redeem(bean, member, "r-2", 120))
	wantLineage(t, e.lineage(t, r2.Transaction.ID), []consumption{
		{LotID: shortOut.Transaction.ID, Issuer: "partner:" + bean, Points: 10},
		{LotID: long.Transaction.ID, Issuer: "partner:" + acme, Points: 100},
		{LotID: twin.Transaction.ID, Issuer: "partner:" + bean, Points: 10},
	})
	e.wantLot(t, shortOut.Transaction.ID, 0, 0)
	e.wantLot(t, long.Transaction.ID, 0, 0)
	e.wantLot(t, twin.Transaction.ID, 0, 40)
	e.wantBalance(t, member, 40, 0)
}

// TestExpiredLotsAreNotSpent: points of an expired lot still count in posted (no expiry sweep
// exists yet) but cannot be redeemed.
func TestExpiredLotsAreNotSpent(t *testing.T) {
	e := newEnv(t, envConfig{lotLifetime: 10 * day})
	e.must(t, award(acme, "m-1", "a-1", 100))
	e.clock.Advance(5 * day)
	e.must(t, award(acme, "m-1", "a-2", 50))
	e.clock.Advance(6 * day) // the first lot has expired
	before := e.rowCounts(t)
	e.fails(t, redeem(bean, "m-1", "r-1", 60), settlement.ErrInsufficientPoints)
	if after := e.rowCounts(t); !maps.Equal(after, before) {
		t.Errorf("row counts: got %v, want %v", after, before)
	}
	e.must(t, redeem(bean, "m-1", "r-2", 50))
	e.wantBalance(t, "m-1", 100, 0)
}

func TestReverseRedemptionReturnsToTheSameLots(t *testing.T) {
	e := newEnv(t, envConfig{lotLifetime: 365 * day})
	short := e.newLedger(t, newStore(t, e.pool, 30*day, sqlstore.RunnerConfig{}))
	const member = "m-rev"
	a := e.must(t, award(acme, member, "a-1", 100))
	b, err := short.Apply(ctxFor(t), award(bean, member, "a-2", 100))
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second)
	e.must(t, award(acme, member, "a-3", 100)) // expires after a: untouched by everything below
	r := e.must(t, redeem(bean, member, "r-1", 150))
	wantLineage(t, e.lineage(t, r.Transaction.ID), []consumption{
		{LotID: b.Transaction.ID, Issuer: "partner:" + bean, Points: 100},
		{LotID: a.Transaction.ID, Issuer: "partner:" + acme, Points: 50},
	})
	e.wantBalance(t, member, 150, 0)

	// Partial: the most recently consumed lot gets its points back first.
	rev1 := e.must(t, reverse(bean, "rev-1", r.Transaction.ID, 30))
	wantOutcomeBalance(t, rev1, 180, 0)
	if got := rev1.Transaction; got.Kind != settlement.KindReversal || got.ReversesID != r.Transaction.ID || got.Points != 30 {
		t.Errorf("reversal transaction: got %+v, want a reversal of 30 of %s", got, r.Transaction.ID)
	}
	e.wantLot(t, a.Transaction.ID, 0, 80)
	e.wantLot(t, b.Transaction.ID, 0, 0)
	// The rest: 20 more to a, then 100 to b.
	e.must(t, reverse(bean, "rev-2", r.Transaction.ID, 0))
	e.wantLot(t, a.Transaction.ID, 0, 100)
	e.wantLot(t, b.Transaction.ID, 0, 100)
	wantLineage(t, e.lineage(t, r.Transaction.ID), []consumption{
		{LotID: b.Transaction.ID, Issuer: "partner:" + bean, Points: 100, Returned: 100},
		{LotID: a.Transaction.ID, Issuer: "partner:" + acme, Points: 50, Returned: 50},
	})
	e.wantBalance(t, member, 300, 0)
	e.fails(t, reverse(bean, "rev-3", r.Transaction.ID, 1), settlement.ErrReversalExceedsOriginal)
	if got := e.queryInt(t, `SELECT reversed_points FROM transactions WHERE id = $1`, r.Transaction.ID); got != 150 {
		t.Errorf("reversed_points of the redemption: got %d, want 150", got)
	}
}

func TestReverseAwardTakesFromItsOwnLot(t *testing.T) {
	e := newEnv(t, envConfig{})
	a := e.must(t, award(acme, "m-1", "a-1", 100))
	e.clock.Advance(time.Second)
	b := e.must(t, award(acme, "m-1", "a-2", 100))
	out := e.must(t, reverse(acme, "rev-1", b.Transaction.ID, 40))
	wantOutcomeBalance(t, out, 160, 0)
	e.wantLot(t, a.Transaction.ID, 0, 100)
	e.wantLot(t, b.Transaction.ID, 40, 60)
	out = e.must(t, reverse(acme, "rev-2", a.Transaction.ID, 0))
	wantOutcomeBalance(t, out, 60, 0)
	e.wantLot(t, a.Transaction.ID, 100, 0)
	e.wantBalance(t, "m-1", 60, 0)
}

// TestReverseSpentAwardMakesDebt: reversing an award whose points were spent takes the balance
// negative, which blocks redemptions until later awards pay the debt down.
func TestReverseSpentAwardMakesDebt(t *testing.T) {
	e := newEnv(t, envConfig{})
	const member = "m-debt"
	a := e.must(t, award(acme, member, "a-1", 100))
	r := e.must(t, redeem(bean, member, "r-1", 80))
	out := e.must(t, reverse(acme, "rev-1", a.Transaction.ID, 0))
	wantOutcomeBalance(t, out, -80, 0)
	e.wantLot(t, a.Transaction.ID, 100, 0)
	if got := e.queryInt(t, `SELECT debt FROM members WHERE id = $1`, member); got != 80 {
		t.Errorf("debt: got %d, want 80", got)
	}
	e.fails(t, redeem(bean, member, "r-2", 1), settlement.ErrInsufficientPoints)
	e.fails(t, authorize(bean, member, "h-1", 1), settlement.ErrInsufficientPoints)

	b := e.must(t, award(acme, member, "a-2", 50))
	wantOutcomeBalance(t, b, -30, 0)
	e.wantLot(t, b.Transaction.ID, 0, 0)
	c := e.must(t, award(bean, member, "a-3", 100))
	wantOutcomeBalance(t, c, 70, 0)
	e.wantLot(t, c.Transaction.ID, 0, 70)
	if got := e.queryInt(t, `SELECT debt FROM members WHERE id = $1`, member); got != 0 {
		t.Errorf("debt after awards: got %d, want 0", got)
	}
	e.verify(t)

	// The redemption that spent the reversed award is itself reversed after the debt was paid:
	// the member gets the 80 points back, into the lots that paid the debt.
	out = e.must(t, reverse(bean, "rev-2", r.Transaction.ID, 0))
	wantOutcomeBalance(t, out, 150, 0)
	e.wantLot(t, a.Transaction.ID, 100, 0)
	if got := e.queryInt(t, `SELECT sum(remaining) FROM lots WHERE member_id = $1`, member); got != 150 {
		t.Errorf("lots remaining: got %d, want 150", got)
	}
	e.must(t, redeem(bean, member, "r-3", 150))
	e.wantBalance(t, member, 0, 0)
}

// TestReverseRedemptionPaysDebt: a redemption reversed while its lot's award is reversed and
// the debt is still owed pays the debt.
func TestReverseRedemptionPaysDebt(t *testing.T) {
	e := newEnv(t, envConfig{})
	const member = "m-1"
	a := e.must(t, award(acme, member, "a-1", 100))
	r := e.must(t, redeem(bean, member, "r-1", 60))
	e.must(t, reverse(acme, "rev-a", a.Transaction.ID, 0)) // posted -60, debt 60
	out := e.must(t, reverse(bean, "rev-r", r.Transaction.ID, 20))
	wantOutcomeBalance(t, out, -40, 0)
	if got := e.queryInt(t, `SELECT debt FROM members WHERE id = $1`, member); got != 40 {
		t.Errorf("debt: got %d, want 40", got)
	}
	e.must(t, reverse(bean, "rev-r2", r.Transaction.ID, 0))
	e.wantBalance(t, member, 0, 0)
	e.wantLot(t, a.Transaction.ID, 100, 0)
}

func TestPartialReversalsUntilNothingLeft(t *testing.T) {
	e := newEnv(t, envConfig{})
	a := e.must(t, award(acme, "m-1", "a-1", 100))
	for i, points := range []int64{30, 30, 40} {
		e.must(t, reverse(acme, fmt.Sprintf("rev-%d", i), a.Transaction.ID, points))
	}
	e.fails(t, reverse(acme, "rev-x", a.Transaction.ID, 1), settlement.ErrReversalExceedsOriginal)
	e.fails(t, reverse(acme, "rev-y", a.Transaction.ID, 0), settlement.ErrReversalExceedsOriginal)
	e.wantBalance(t, "m-1", 0, 0)

	b := e.must(t, award(acme, "m-1", "a-2", 50))
	e.fails(t, reverse(acme, "rev-z", b.Transaction.ID, 51), settlement.ErrReversalExceedsOriginal)
	e.wantLot(t, b.Transaction.ID, 0, 50)

	lst, _, err := e.ledger.ListTransactions(ctxFor(t), acme, "m-1", 10, nil)
	if err != nil {
		t.Fatal(err)
	}
	var status settlement.TxnStatus
	for _, txn := range lst {
		if txn.ID == a.Transaction.ID {
			status = txn.Status()
		}
	}
	if status != settlement.StatusReversed {
		t.Errorf("status of the fully reversed award: got %q, want %q", status, settlement.StatusReversed)
	}
}

func TestNotReversible(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.must(t, award(acme, "m-1", "a-1", 100))
	h := e.must(t, authorize(bean, "m-1", "h-1", 40))
	e.fails(t, reverse(bean, "rev-1", h.Transaction.ID, 0), settlement.ErrNotReversible)
	v := e.must(t, void(bean, "v-1", h.Hold.ID))
	e.fails(t, reverse(bean, "rev-2", v.Transaction.ID, 0), settlement.ErrNotReversible)
	a2 := e.must(t, award(acme, "m-1", "a-2", 10))
	rev := e.must(t, reverse(acme, "rev-3", a2.Transaction.ID, 0))
	e.fails(t, reverse(acme, "rev-4", rev.Transaction.ID, 0), settlement.ErrNotReversible)
	e.wantBalance(t, "m-1", 100, 0)
}

// TestRedeemAcrossLotPages spends more lots than one page of the lot query holds.
func TestRedeemAcrossLotPages(t *testing.T) {
	e := newEnv(t, envConfig{})
	const lots = 230 // > lotPageSize (200)
	for i := range lots {
		e.must(t, award(acme, "m-1", fmt.Sprintf("a-%d", i), 2))
		e.clock.Advance(time.Second)
	}
	r := e.must(t, redeem(bean, "m-1", "r-1", 2*lots-1))
	lineage := e.lineage(t, r.Transaction.ID)
	if len(lineage) != lots {
		t.Fatalf("lineage rows: got %d, want %d", len(lineage), lots)
	}
	if last := lineage[lots-1]; last.Points != 1 {
		t.Errorf("last lot consumed: got %d points, want 1", last.Points)
	}
	e.wantBalance(t, "m-1", 1, 0)
	e.fails(t, redeem(bean, "m-1", "r-2", 2), settlement.ErrInsufficientPoints)
}
