package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

const fuel = "city-fuel"

// seedTerms registers the worked example's partners and terms (EUR per point, no fees).
func (e *env) seedTerms(t *testing.T) {
	t.Helper()
	ctx := ctxFor(t)
	for _, p := range []struct{ id, issue, reimb string }{
		{acme, "0.0100", "0.0080"}, {bean, "0.0120", "0.0090"}, {fuel, "0.0110", "0.0085"},
	} {
		if _, err := e.store.EnsurePartner(ctx, settlement.Partner{ID: p.id, Name: p.id}); err != nil {
			t.Fatal(err)
		}
		e.setTerms(t, p.id, p.issue, p.reimb, time.Time{})
	}
}

func (e *env) setTerms(t *testing.T, partner, issue, reimb string, effective time.Time) settlement.PriceTerms {
	t.Helper()
	terms := settlement.PriceTerms{PartnerID: partner, EffectiveAt: effective, Currency: "EUR",
		IssuePrice: decimal(t, issue), ReimbursementRate: decimal(t, reimb)}
	got, err := e.store.SetPriceTerms(ctxFor(t), terms, e.clock.Now())
	if err != nil {
		t.Fatalf("SetPriceTerms %s: %v", partner, err)
	}
	return got
}

func decimal(t *testing.T, s string) apd.Decimal {
	t.Helper()
	d, _, err := apd.NewFromString(s)
	if err != nil {
		t.Fatal(err)
	}
	return *d
}

// settle runs settlement at cutoff with the clock an hour later.
func (e *env) settle(t *testing.T, cutoff time.Time) settlement.RunRecord {
	t.Helper()
	rec, err := e.store.Settle(ctxFor(t), settlement.SettleConfig{Cutoff: cutoff, Now: e.clock.Now(), SafetyLag: time.Minute, Holder: t.Name()})
	if err != nil {
		t.Fatalf("Settle(%s): %v", cutoff.Format(time.RFC3339), err)
	}
	if rec.Status != "published" {
		t.Fatalf("run %d %s; checks %+v", rec.ID, rec.Status, rec.Checks)
	}
	return rec
}

func nets(rec settlement.RunRecord) map[string]string {
	out := map[string]string{"operator": rec.Result.OperatorRevenue.Text('f')}
	for _, p := range rec.Result.Positions {
		out[p.PartnerID] = p.Net.Text('f')
	}
	return out
}

func wantNets(t *testing.T, rec settlement.RunRecord, want map[string]string) {
	t.Helper()
	got := nets(rec)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("run %d: %s = %s, want %s (all: %v)", rec.ID, k, got[k], v, got)
		}
	}
}

// workedExample: earn 1000 at acme-air, 500 at bean-coffee, redeem 1200 at city-fuel.
func (e *env) workedExample(t *testing.T, member string) (awardID, redeemID string) {
	t.Helper()
	a := e.must(t, award(acme, member, "we-a-"+member, 1000))
	e.clock.Advance(time.Second)
	e.must(t, award(bean, member, "we-b-"+member, 500))
	e.clock.Advance(time.Second)
	r := e.must(t, redeem(fuel, member, "we-r-"+member, 1200))
	return a.Transaction.ID, r.Transaction.ID
}

func TestSettlementWorkedExampleHub(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	e.workedExample(t, "M-1")
	cutoff := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	rec := e.settle(t, cutoff)
	wantNets(t, rec, map[string]string{acme: "-10.00", bean: "-6.00", fuel: "10.20", "operator": "5.80"})
	if rec.Transactions != 3 || rec.Late != 0 {
		t.Errorf("run settled %d transactions (%d late), want 3 (0)", rec.Transactions, rec.Late)
	}
}

func TestSettlementWorkedExampleBilateral(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	if err := e.store.SetSetting(ctxFor(t), "settlement_model", "bilateral"); err != nil {
		t.Fatal(err)
	}
	e.workedExample(t, "M-1")
	cutoff := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	rec := e.settle(t, cutoff)
	wantNets(t, rec, map[string]string{acme: "-8.50", bean: "-1.70", fuel: "10.20", "operator": "0.00"})
	want := []settlement.MatrixCell{{Issuer: acme, Redeemer: fuel, Points: 1000}, {Issuer: bean, Redeemer: fuel, Points: 200}}
	if fmt.Sprint(rec.Result.Matrix) != fmt.Sprint(want) {
		t.Errorf("matrix = %v, want %v", rec.Result.Matrix, want)
	}
}

// A period keeps the model it was closed under: switching to bilateral settles the next period
// bilaterally, while a re-run of the period closed under hub is hub again, line for line.
func TestSettlementModelSwitchKeepsClosedPeriods(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	ctx := ctxFor(t)
	if m, err := e.store.SettlementModel(ctx); err != nil || m != settlement.ModelHub {
		t.Fatalf("default model: %q %v, want hub", m, err)
	}
	e.workedExample(t, "M-1")
	cutoff1 := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	run1 := e.settle(t, cutoff1)
	if prev, err := e.store.SetSettlementModel(ctx, settlement.ModelBilateral); err != nil || prev != settlement.ModelHub {
		t.Fatalf("SetSettlementModel(bilateral): previous %q, %v; want hub", prev, err)
	}
	if _, err := e.store.SetSettlementModel(ctx, "triangular"); err == nil {
		t.Error("SetSettlementModel accepted an unknown model")
	}
	e.workedExample(t, "M-2")
	cutoff2 := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	run2 := e.settle(t, cutoff2)
	if run2.Model != settlement.ModelBilateral {
		t.Errorf("period 2 closed after the switch: model %s, want bilateral", run2.Model)
	}
	wantNets(t, run2, map[string]string{acme: "-8.50", bean: "-1.70", fuel: "10.20", "operator": "0.00"})
	rerun := e.settle(t, cutoff1)
	if rerun.Model != settlement.ModelHub || rerun.Period != 1 {
		t.Errorf("re-run of period 1: model %s, period %d; want hub, 1", rerun.Model, rerun.Period)
	}
	if fmt.Sprint(rerun.Result.Lines) != fmt.Sprint(run1.Result.Lines) || fmt.Sprint(nets(rerun)) != fmt.Sprint(nets(run1)) {
		t.Errorf("re-run of period 1 after the switch differs:\n%v\n%v", rerun.Result.Lines, run1.Result.Lines)
	}
}

// A run with an idempotency key happens once: the same key returns that run (replayed), the key
// with another cutoff is refused, and a run without a key is a re-run as before.
func TestSettlementIdempotencyKey(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	e.workedExample(t, "M-1")
	cutoff := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	settle := func(cutoff time.Time, key string) (settlement.RunRecord, error) {
		return e.store.Settle(ctxFor(t), settlement.SettleConfig{Cutoff: cutoff, Now: e.clock.Now(), SafetyLag: time.Minute, Holder: "a", IdempotencyKey: key})
	}
	first, err := settle(cutoff, "run-2026-11")
	if err != nil || first.Replayed {
		t.Fatalf("first run: %+v %v", first.Replayed, err)
	}
	again, err := settle(cutoff, "run-2026-11")
	if err != nil || !again.Replayed || again.ID != first.ID || fmt.Sprint(nets(again)) != fmt.Sprint(nets(first)) {
		t.Fatalf("same key: run %d replayed %v (%v), want run %d replayed with the same nets", again.ID, again.Replayed, err, first.ID)
	}
	if _, err := settle(cutoff.Add(time.Second), "run-2026-11"); !errors.Is(err, settlement.ErrIdempotencyKeyReused) {
		t.Errorf("same key, another cutoff: %v, want ErrIdempotencyKeyReused", err)
	}
	rerun, err := settle(cutoff, "")
	if err != nil || rerun.Replayed || rerun.ID == first.ID {
		t.Errorf("no key: run %d replayed %v (%v), want a new run", rerun.ID, rerun.Replayed, err)
	}
	var n int
	if err := e.pool.QueryRow(ctxFor(t), `SELECT count(*) FROM settlement_runs`).Scan(&n); err != nil || n != 2 {
		t.Errorf("runs stored: %d (%v), want 2", n, err)
	}
}

// A reversal after the cutoff is a late adjustment of the next period; the closed period,
// re-run, prices exactly as before.
func TestSettlementLateReversalLeavesClosedPeriod(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	_, redeemID := e.workedExample(t, "M-1")
	cutoff1 := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	run1 := e.settle(t, cutoff1)
	e.must(t, reverse(fuel, "rev-1", redeemID, 200))
	cutoff2 := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	run2 := e.settle(t, cutoff2)
	if run2.Period != 2 || run2.Late != 1 {
		t.Errorf("run 2: period %d with %d late items, want period 2 with 1", run2.Period, run2.Late)
	}
	// 200 points at 0.0085 = 1.70 given back by city-fuel to the operator.
	wantNets(t, run2, map[string]string{fuel: "-1.70", "operator": "1.70"})
	rerun := e.settle(t, cutoff1)
	if rerun.ID == run1.ID || rerun.Period != 1 {
		t.Fatalf("re-run: id %d period %d, want a new run of period 1", rerun.ID, rerun.Period)
	}
	if a, b := e.linesOf(t, run1.ID), e.linesOf(t, rerun.ID); a != b {
		t.Errorf("closed period changed on re-run:\nrun %d:\n%s\nrun %d:\n%s", run1.ID, a, rerun.ID, b)
	}
}

// linesOf renders a run's stored lines without its id, for byte comparison.
func (e *env) linesOf(t *testing.T, runID int64) string {
	t.Helper()
	rows, err := e.pool.Query(ctxFor(t), `SELECT partner_id, line_no, kind, counterparty, price_version, points, rate::TEXT, amount::TEXT, late, transactions
		FROM settlement_lines WHERE run_id = $1 ORDER BY partner_id, line_no`, runID)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		vals, err := r.Values()
		return fmt.Sprintln(vals...), err
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(lines)
}

// A changed price book applies only after its effective time.
func TestSettlementPriceChangeByEffectiveTime(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	e.must(t, award(acme, "M-1", "a-1", 1000)) // version 1: 0.0100
	e.setTerms(t, acme, "0.0200", "0.0080", e.clock.Now().Add(time.Minute))
	e.must(t, award(acme, "M-1", "a-2", 1000)) // still version 1: v2 not yet effective
	e.clock.Advance(2 * time.Minute)
	e.must(t, award(acme, "M-1", "a-3", 1000)) // version 2: 0.0200
	cutoff := e.clock.Now().Add(time.Second)
	e.clock.Advance(time.Hour)
	rec := e.settle(t, cutoff)
	wantNets(t, rec, map[string]string{acme: "-40.00"}) // 2000 × 0.01 + 1000 × 0.02
	if _, err := e.store.SetPriceTerms(ctxFor(t), settlement.PriceTerms{PartnerID: acme, Currency: "EUR",
		EffectiveAt: e.clock.Now().Add(-time.Hour), IssuePrice: decimal(t, "1"), ReimbursementRate: decimal(t, "1")}, e.clock.Now()); err == nil {
		t.Errorf("backdated terms were accepted, want an error")
	}
	again := e.settle(t, cutoff)
	if e.linesOf(t, rec.ID) != e.linesOf(t, again.ID) {
		t.Errorf("re-run priced the old period differently")
	}
}

// Concurrent traffic during runs: every run's checks pass and every transaction lands in
// exactly one period.
func TestSettlementUnderConcurrentTraffic(t *testing.T) {
	e := newEnv(t, envConfig{maxConns: 16})
	e.seedTerms(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && i < 400; i++ {
				m := fmt.Sprintf("C-%d-%d", w, i%5)
				_, _ = e.ledger.Apply(ctx, award([]string{acme, bean, fuel}[i%3], m, fmt.Sprintf("c-a-%d-%d", w, i), 50))
				_, _ = e.ledger.Apply(ctx, redeem([]string{acme, bean, fuel}[(i+1)%3], m, fmt.Sprintf("c-r-%d-%d", w, i), 20))
			}
		}()
	}
	var runs []settlement.RunRecord
	for range 3 {
		time.Sleep(50 * time.Millisecond) // let traffic build between closes; not a wait for a result
		e.clock.Advance(time.Minute)
		runs = append(runs, e.settle(t, e.clock.Now().Add(-2*time.Minute)))
	}
	cancel()
	wg.Wait()
	e.clock.Advance(time.Hour)
	runs = append(runs, e.settle(t, e.clock.Now().Add(-time.Minute)))
	var settled int64
	for _, r := range runs {
		settled += r.Transactions
	}
	total := e.queryInt(t, `SELECT count(*) FROM transactions WHERE kind IN ('award', 'redeem', 'capture', 'reversal')`)
	if settled != total {
		t.Errorf("runs settled %d transactions, the ledger has %d: each must land in exactly one period", settled, total)
	}
}
