package sqlstore_test

import (
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
)

func (e *env) allowance(t *testing.T, partner string) string {
	t.Helper()
	var s string
	if err := e.pool.QueryRow(ctxFor(t), `SELECT COALESCE(sum(available), 0)::DECIMAL(30, 2)::TEXT FROM exposure_shards WHERE partner_id = $1`, partner).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestLimitsRefuseAtTheBound: each limit refuses the award that would cross it and accepts
// the one that reaches it exactly; a refusal changes nothing; reversals and settled periods
// give the outstanding allowance back; crossing 80% raises the alert once.
func TestLimitsRefuseAtTheBound(t *testing.T) {
	e := newEnv(t, envConfig{})
	maxValue := decimal(t, "20.00") // 2000 points at 0.0100
	e.termsWith(t, acme, "0.0100", "0.0080", "0", settlement.Limits{MaxOutstandingValue: &maxValue,
		MaxPointsPerTransaction: 500, MaxPointsPerMemberDay: 800})
	e.termsWith(t, bean, "0.0120", "0.0090", "0", settlement.Limits{})

	// Per transaction: 500 at most.
	e.fails(t, award(acme, "M-1", "txn-over", 501), settlement.ErrPartnerLimitExceeded)
	e.must(t, award(acme, "M-1", "txn-at", 500))
	// Per member per day: 800 at most; another member, partner or day is not counted.
	e.fails(t, award(acme, "M-1", "day-over", 301), settlement.ErrMemberLimitExceeded)
	e.must(t, award(bean, "M-1", "day-other-partner", 500))
	e.must(t, award(acme, "M-1", "day-at", 300))
	e.clock.Advance(24 * time.Hour)
	e.must(t, award(acme, "M-1", "day-next", 500))
	// Outstanding value: 13.00 of 20.00 used.
	if got := e.allowance(t, acme); got != "7.00" {
		t.Fatalf("allowance: got %s, want 7.00", got)
	}
	m2 := e.must(t, award(acme, "M-2", "out-1", 500))
	before := e.queryInt(t, `SELECT count(*) FROM transactions`)
	e.fails(t, award(acme, "M-3", "out-over", 201), settlement.ErrPartnerLimitExceeded)
	if got := e.queryInt(t, `SELECT count(*) FROM transactions`); got != before {
		t.Errorf("transactions after a refused award: got %d, want %d", got, before)
	}
	if got := e.allowance(t, acme); got != "2.00" {
		t.Errorf("allowance after a refused award: got %s, want 2.00", got)
	}
	e.wantNoMember(t, "M-3")
	e.must(t, award(acme, "M-3", "out-at", 200))
	e.fails(t, award(acme, "M-4", "out-full", 1), settlement.ErrPartnerLimitExceeded)

	sw, err := settlement.NewSweeper(settlement.SweeperConfig{Store: e.store, Logger: quiet, Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{1, 0} { // raised once per crossing
		if r, err := sw.Sweep(ctxFor(t)); err != nil || r.Alerts != want {
			t.Errorf("sweep #%d: got (%+v, %v), want %d alerts", i+1, r, err, want)
		}
	}

	// An award reversal gives its value back at once.
	e.must(t, reverse(acme, "rev-m2", m2.Transaction.ID, 500))
	e.must(t, award(acme, "M-4", "after-reversal", 500))
	e.fails(t, award(acme, "M-4", "after-reversal-over", 1), settlement.ErrPartnerLimitExceeded)

	// A published settlement run gives back the period's net issuance.
	cutoff := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	e.settle(t, cutoff)
	if n, err := e.store.ReleaseSettledExposure(ctxFor(t), e.clock.Now()); err != nil || n != 1 {
		t.Fatalf("ReleaseSettledExposure: got (%d, %v), want 1 period", n, err)
	}
	if n, err := e.store.ReleaseSettledExposure(ctxFor(t), e.clock.Now()); err != nil || n != 0 {
		t.Fatalf("ReleaseSettledExposure again: got (%d, %v), want 0", n, err)
	}
	if got := e.allowance(t, acme); got != "20.00" {
		t.Errorf("allowance after settlement: got %s, want 20.00", got)
	}
	e.must(t, award(acme, "M-5", "after-settlement", 500))
}

// TestLimitRaisedAndProvisionedLate: a limit set after awards counts what is already
// outstanding, and raising it adds the difference.
func TestLimitRaisedAndProvisionedLate(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.termsWith(t, acme, "0.0100", "0.0080", "0", settlement.Limits{})
	e.must(t, award(acme, "M-1", "before-limit", 1500))
	e.clock.Advance(time.Second)
	limit := decimal(t, "20.00")
	e.termsWith(t, acme, "0.0100", "0.0080", "0", settlement.Limits{MaxOutstandingValue: &limit})
	e.fails(t, award(acme, "M-1", "over", 501), settlement.ErrPartnerLimitExceeded)
	e.must(t, award(acme, "M-1", "at", 500))
	e.clock.Advance(time.Second)
	raised := decimal(t, "25.00")
	e.termsWith(t, acme, "0.0100", "0.0080", "0", settlement.Limits{MaxOutstandingValue: &raised})
	e.fails(t, award(acme, "M-1", "over-raised", 501), settlement.ErrPartnerLimitExceeded)
	e.must(t, award(acme, "M-1", "at-raised", 500))
}

func (e *env) wantNoMember(t *testing.T, id string) {
	t.Helper()
	if got := e.queryInt(t, `SELECT count(*) FROM members WHERE id = $1`, id); got != 0 {
		t.Errorf("member %s exists after a refused award", id)
	}
}
