package sqlstore_test

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// rollUp runs the roll-up worker once at the test clock's time.
func (e *env) rollUp(t *testing.T) sqlstore.RollUpStats {
	t.Helper()
	st, err := e.store.RollUp(ctxFor(t), e.clock.Now())
	if err != nil {
		t.Fatalf("RollUp: %v", err)
	}
	return st
}

// at moves the test clock to a.
func (e *env) at(a time.Time) { e.clock.Advance(a.Sub(e.clock.Now())) }

// renderPeriodData prints a period's aggregates in a canonical order (the database returns
// groups in any order).
func renderPeriodData(d settlement.PeriodData) string {
	var lines []string
	for _, f := range d.Flows {
		lines = append(lines, fmt.Sprintf("flow %s %s reverses=%s v%d late=%t %d points %d txns", f.PartnerID, f.Kind, f.Reverses, f.Version, f.Late, f.Points, f.Txns))
	}
	for _, g := range d.Lineage {
		lines = append(lines, fmt.Sprintf("lineage %s→%s v%d late=%t reversal=%t %d points %d txns", g.Issuer, g.Redeemer, g.Version, g.Late, g.Reversal, g.Points, g.Txns))
	}
	for _, m := range []struct {
		name string
		m    map[string]int64
	}{{"issued", d.LedgerIssued}, {"redeemed", d.LedgerRedeemed}, {"campaign", d.LedgerCampaigns}} {
		for _, k := range slices.Sorted(maps.Keys(m.m)) {
			lines = append(lines, fmt.Sprintf("ledger %s %s %d", m.name, k, m.m[k]))
		}
	}
	slices.Sort(lines)
	return fmt.Sprintf("%d transactions, %d late\n%s", d.Transactions, d.Late, strings.Join(lines, "\n"))
}

// comparePeriod checks that the run's split read (rollups plus unrolled rows) and the ledger
// rows alone aggregate the window identically, and returns the aggregates.
func (e *env) comparePeriod(t *testing.T, period int64, prev, cutoff time.Time) string {
	t.Helper()
	ctx := ctxFor(t)
	split, err := sqlstore.PeriodData(ctx, e.store, period, prev, cutoff, true)
	if err != nil {
		t.Fatalf("period %d (%s, %s] with rollups: %v", period, prev, cutoff, err)
	}
	ledger, err := sqlstore.PeriodData(ctx, e.store, period, prev, cutoff, false)
	if err != nil {
		t.Fatalf("period %d (%s, %s] from the ledger: %v", period, prev, cutoff, err)
	}
	a, b := renderPeriodData(split), renderPeriodData(ledger)
	if a != b {
		t.Errorf("period %d (%s, %s]: rollups and ledger differ:\nwith rollups:\n%s\nfrom the ledger:\n%s", period,
			prev.Format(time.RFC3339Nano), cutoff.Format(time.RFC3339Nano), a, b)
	}
	return a
}

// Transactions on hour boundaries, inside boundary hours, across several epochs (some rolled up,
// the last not), late ones and reversals: for aligned and unaligned windows, a settlement
// aggregation from the rollups equals the one from the ledger rows, and Verify (at cleanup)
// finds each rollup equal to its rows.
func TestRollupsMatchTheLedger(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	n := 0
	spend := func(at time.Time, member string) (awardID, redeemID string) {
		t.Helper()
		e.at(at)
		n++
		a := e.must(t, award(acme, member, fmt.Sprintf("ra-%d", n), 1000))
		e.must(t, award(bean, member, fmt.Sprintf("rb-%d", n), 500))
		r := e.must(t, redeem(fuel, member, fmt.Sprintf("rr-%d", n), 1200))
		return a.Transaction.ID, r.Transaction.ID
	}
	h := t0.Truncate(time.Hour) // t0 is on an hour
	if st := e.rollUp(t); st.RolledThrough != 0 || st.Sealed {
		t.Fatalf("roll-up of an empty ledger: %+v, want epoch 0 (before any traffic) rolled up and nothing sealed", st)
	}
	spend(h.Add(time.Hour), "M-1") // exactly on an hour: the hour before's last instant
	spend(h.Add(time.Hour+time.Microsecond), "M-2")
	_, redeem3 := spend(h.Add(90*time.Minute), "M-3")
	if st := e.rollUp(t); !st.Sealed || st.Rolled != 1 || st.Transactions != 9 {
		t.Fatalf("first roll-up: %+v, want one epoch of 9 transactions sealed and rolled up", st)
	}
	award4, _ := spend(h.Add(3*time.Hour), "M-4")
	spend(h.Add(4*time.Hour+30*time.Minute), "M-5")
	e.rollUp(t)
	spend(h.Add(5*time.Hour+10*time.Minute), "M-6")

	// Period 1 closes at an unaligned cutoff inside an hour with traffic; its run rolls up
	// what is sealed, its own last epoch included.
	cutoff1 := h.Add(4*time.Hour + 45*time.Minute)
	e.at(h.Add(6 * time.Hour))
	run1 := e.settle(t, cutoff1)
	if run1.Transactions != 15 {
		t.Errorf("run 1 settled %d transactions, want 15 (M-1 to M-5)", run1.Transactions)
	}
	// After the close: a late redemption (created before cutoff 1, stamped period 2), a reversal
	// of a period-1 redemption, a partial award reversal, and traffic in period 2.
	spend(cutoff1.Add(-2*time.Hour), "M-7") // in an hour wholly inside period 1
	e.at(h.Add(6*time.Hour + time.Minute))
	e.must(t, reverse(fuel, "rv-1", redeem3, 1200))
	e.must(t, reverse(acme, "rv-2", award4, 100))
	e.rollUp(t)
	spend(h.Add(7*time.Hour), "M-8")
	e.rollUp(t)
	spend(h.Add(8*time.Hour+5*time.Minute), "M-9") // left unrolled: the run reads it from the ledger

	if e.queryInt(t, `SELECT count(*) FROM rollup_flows`) == 0 {
		t.Fatal("no rollup rows: the comparison below would not test the rollups")
	}
	first := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	got := e.comparePeriod(t, 1, first, cutoff1)
	if !strings.HasPrefix(got, "15 transactions, 0 late") {
		t.Errorf("period 1 aggregates:\n%s\nwant 15 transactions, none late", got)
	}
	// Windows ending on, just after and inside the hours of M-1 (on the hour) and M-2 (1µs after).
	for _, c := range []struct {
		cutoff time.Time
		txns   int64
	}{{h.Add(time.Hour), 3}, {h.Add(time.Hour + time.Microsecond), 6}, {h.Add(90 * time.Minute), 9}, {h.Add(2 * time.Hour), 9}} {
		if got := e.comparePeriod(t, 1, first, c.cutoff); !strings.HasPrefix(got, fmt.Sprintf("%d transactions, 0 late", c.txns)) {
			t.Errorf("period 1 to %s:\n%s\nwant %d transactions", c.cutoff.Format(time.RFC3339Nano), got, c.txns)
		}
	}
	// Period 2: M-6 (stamped 1, created after cutoff 1), M-7 (late: stamped 2, created before
	// it), the two reversals (late adjustments of period-1 transactions), M-8, M-9.
	for _, c := range []struct {
		cutoff     time.Time
		txns, late int64
	}{
		{h.Add(8 * time.Hour), 3 + 3 + 2 + 3, 3 + 2}, // aligned; M-9 after it
		{h.Add(8*time.Hour + 5*time.Minute), 3 + 3 + 2 + 3 + 3, 3 + 2},
		{h.Add(7*time.Hour + 30*time.Minute), 3 + 3 + 2 + 3, 3 + 2},
		{h.Add(6*time.Hour + time.Minute), 3 + 3 + 2, 3 + 2},
	} {
		got := e.comparePeriod(t, 2, cutoff1, c.cutoff)
		want := fmt.Sprintf("%d transactions, %d late", c.txns, c.late)
		if !strings.HasPrefix(got, want) {
			t.Errorf("period 2 to %s:\n%s\nwant %s", c.cutoff.Format(time.RFC3339), got, want)
		}
	}
	e.at(h.Add(9 * time.Hour))
	run2 := e.settle(t, h.Add(8*time.Hour))
	if run2.Transactions != 11 || run2.Late != 5 {
		t.Errorf("run 2 settled %d transactions (%d late), want 11 (5)", run2.Transactions, run2.Late)
	}
	rerun := e.settle(t, cutoff1)
	if a, b := e.linesOf(t, run1.ID), e.linesOf(t, rerun.ID); a != b {
		t.Errorf("period 1 changed on re-run after more roll-ups:\nrun %d:\n%s\nrun %d:\n%s", run1.ID, a, rerun.ID, b)
	}
}

// A rollup that disagrees with its rows is reported by Verify and changes a run's aggregates:
// the rollups are what runs read, and the invariant watches them.
func TestVerifyFindsARollupThatDisagrees(t *testing.T) {
	e := newEnv(t, envConfig{skipVerify: true})
	e.seedTerms(t)
	e.workedExample(t, "M-1")
	e.rollUp(t)
	if st := e.rollUp(t); st.Sealed || st.Rolled != 0 {
		t.Fatalf("second roll-up with no new traffic: %+v, want nothing sealed or rolled", st)
	}
	e.verify(t)
	if _, err := e.pool.Exec(ctxFor(t), `UPDATE rollup_totals SET amount = amount + 1 WHERE account = 'partner:acme-air:issued'`); err != nil {
		t.Fatal(err)
	}
	vs, err := e.store.Verify(ctxFor(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].Check != "rolled-up ledger totals equal their entries" {
		t.Errorf("Verify found %+v, want the changed ledger total", vs)
	}
	first := time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	cutoff := e.clock.Now().Add(2 * time.Hour)
	ctx := ctxFor(t)
	split, err := sqlstore.PeriodData(ctx, e.store, 1, first, cutoff, true)
	if err != nil {
		t.Fatal(err)
	}
	if split.LedgerIssued[acme] != 999 {
		t.Errorf("ledger total of acme-air from the rollups = %d, want the changed 999", split.LedgerIssued[acme])
	}
}

// Roll-ups from several replicas at once, with traffic running: every epoch is rolled up
// exactly once and every rollup equals its rows (Verify at cleanup), so no transaction of a
// sealed epoch committed after its roll-up.
func TestRollUpConcurrentWithTraffic(t *testing.T) {
	e := newEnv(t, envConfig{maxConns: 16})
	e.seedTerms(t)
	ctx := ctxFor(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 64)
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				member := fmt.Sprintf("C-%d-%d", w, i%5)
				if _, err := e.ledger.Apply(ctx, award(acme, member, fmt.Sprintf("c-%d-%d", w, i), 10)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	var rollers sync.WaitGroup
	for range 2 {
		rollers.Go(func() {
			for range 10 {
				if _, err := e.store.RollUp(ctx, e.clock.Now()); err != nil {
					errs <- err
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	rollers.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent traffic and roll-ups: %v", err)
	}
	st := e.rollUp(t)
	epochs := e.queryInt(t, `SELECT count(*) FROM rollup_epochs`)
	open := e.queryInt(t, `SELECT open_epoch FROM settlement_state WHERE shard = 0`)
	if epochs != open || st.RolledThrough != open-1 || open < 3 {
		t.Errorf("%d epochs rolled up through %d with epoch %d open; want every epoch before the open one, and at least 2 sealed", epochs, st.RolledThrough, open)
	}
}
