package sqlstore_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// fuelCampaign is the README's campaign: 2× points at city-fuel, co-funded 60/40 by acme-air
// and city-fuel.
func fuelCampaign(t *testing.T, budget, memberCap int64) settlement.Campaign {
	return settlement.Campaign{ID: "fuel-2x", Name: "Double points on fuel", StartsAt: t0.Add(-time.Hour), EndsAt: t0.Add(24 * time.Hour),
		Multiplier: decimal(t, "2"), MemberCapPoints: memberCap, BudgetPoints: budget,
		Sponsors: []settlement.Sponsor{{PartnerID: acme, ShareBps: 6000}, {PartnerID: fuel, ShareBps: 4000}},
		Partners: []string{fuel}}
}

func (e *env) createCampaign(t *testing.T, c settlement.Campaign) settlement.Campaign {
	t.Helper()
	if err := settlement.ValidateCampaign(c); err != nil {
		t.Fatalf("ValidateCampaign: %v", err)
	}
	got, err := e.store.CreateCampaign(ctxFor(t), c, e.clock.Now())
	if err != nil {
		t.Fatalf("CreateCampaign: %v", err)
	}
	return got
}

// campaignState reads what the campaign has left and what member has earned from it.
func (e *env) campaignState(t *testing.T, id, member string) (budgetLeft, memberAwarded int64) {
	t.Helper()
	budgetLeft = e.queryInt(t, `SELECT sum(remaining)::INT8 FROM campaign_budget_shards WHERE campaign_id = $1`, id)
	memberAwarded = e.queryInt(t, `SELECT COALESCE(sum(awarded), 0)::INT8 FROM campaign_member_caps WHERE campaign_id = $1 AND member_id = $2`, id, member)
	return budgetLeft, memberAwarded
}

// TestCampaignBudgetUnderConcurrentAwards: 64 concurrent awards of 100 points at city-fuel
// (each would earn a 100-point bonus) by 16 members with a cap of 250 each, against a budget of
// 2550: the budget is spent exactly, the caps hold, and the ledger stays sound.
func TestCampaignBudgetUnderConcurrentAwards(t *testing.T) {
	const workers, members, base, budget, memberCap = 64, 16, 100, 2550, 250
	e, retries := newRaceEnv(t)
	e.seedTerms(t)
	e.createCampaign(t, fuelCampaign(t, budget, memberCap))
	ctx := ctxFor(t)
	outs := make([]settlement.Outcome, workers)
	errs := make([]error, workers)
	concurrently(workers, func(i int) {
		cmd := award(fuel, fmt.Sprintf("m-camp-%d", i%members), fmt.Sprintf("camp-%d", i), base)
		for range 5 { // a conflict beyond the runner's retries: the same key again, as a client would
			outs[i], errs[i] = e.ledger.Apply(ctx, cmd)
			if !errors.Is(errs[i], settlement.ErrTransactionConflict) {
				break
			}
		}
	})
	var spent int64
	perMember := map[string]int64{}
	for i, out := range outs {
		if errs[i] != nil {
			t.Fatalf("award %d: %v", i, errs[i])
		}
		var bonus int64
		for _, b := range out.Bonuses {
			bonus += b.Points
		}
		spent += bonus
		perMember[out.Transaction.MemberID] += bonus
	}
	if spent != budget {
		t.Errorf("bonuses: got %d points in all, want exactly the budget %d", spent, budget)
	}
	if left, _ := e.campaignState(t, "fuel-2x", ""); left != 0 {
		t.Errorf("budget left: got %d, want 0", left)
	}
	for m, got := range perMember {
		if got > memberCap {
			t.Errorf("member %s: got %d bonus points, want at most the cap %d", m, got, memberCap)
		}
		if _, awarded := e.campaignState(t, "fuel-2x", m); awarded != got {
			t.Errorf("member %s: cap row says %d, bonuses %d", m, awarded, got)
		}
		e.wantBalance(t, m, 4*base+got, 0)
	}
	if got := e.queryInt(t, `SELECT COALESCE(sum(amount), 0)::INT8 FROM entries WHERE account = 'campaign:fuel-2x'`); got != -budget {
		t.Errorf("campaign account: got %d, want %d", got, -budget)
	}
	e.verify(t)
	t.Logf("%d concurrent awards: %d bonus points spent of %d, %d retries", workers, spent, budget, retries.Load())
}

// TestCampaignReversalRestoresEverything: reversing an award that earned a bonus takes the
// bonus back in proportion (the last reversal the remainder) and returns it to the budget and
// the member's cap.
func TestCampaignReversalRestoresEverything(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	c := fuelCampaign(t, 10_000, 5_000)
	c.Multiplier = decimal(t, "1.5")
	e.createCampaign(t, c)
	const member = "m-refund"
	out := e.must(t, award(fuel, member, "buy", 999))
	if len(out.Bonuses) != 1 || out.Bonuses[0].Points != 499 || out.Bonuses[0].CampaignID != c.ID {
		t.Fatalf("award bonuses: got %+v, want one of 499 points (floor(999 × 0.5)) from %s", out.Bonuses, c.ID)
	}
	wantOutcomeBalance(t, out, 999+499, 0)
	if left, awarded := e.campaignState(t, c.ID, member); left != 10_000-499 || awarded != 499 {
		t.Errorf("after award: budget left %d, member awarded %d; want %d, 499", left, awarded, 10_000-499)
	}
	steps := []struct {
		points, wantBonus, wantPosted int64
	}{
		{500, 249, 999 + 499 - 500 - 249}, // floor(499 × 500/999)
		{499, 250, 0},                     // the last reversal takes the remainder
	}
	for i, s := range steps {
		rev := e.must(t, reverse(fuel, fmt.Sprintf("refund-%d", i), out.Transaction.ID, s.points))
		if len(rev.Bonuses) != 1 || rev.Bonuses[0].Points != s.wantBonus {
			t.Errorf("reversal %d of %d: bonuses %+v, want %d points taken back", i, s.points, rev.Bonuses, s.wantBonus)
		}
		wantOutcomeBalance(t, rev, s.wantPosted, 0)
	}
	e.wantBalance(t, member, 0, 0)
	if left, awarded := e.campaignState(t, c.ID, member); left != 10_000 || awarded != 0 {
		t.Errorf("after reversals: budget left %d, member awarded %d; want 10000, 0", left, awarded)
	}
	bonus := e.lot(t, out.Bonuses[0].TransactionID)
	if bonus.issuer != "campaign:"+c.ID || bonus.reversed != 499 || bonus.remained != 0 {
		t.Errorf("bonus lot: got %+v, want issuer campaign:%s fully reversed", bonus, c.ID)
	}
}

// TestCampaignRules: outside the window, paused, below the minimum, at other partners or
// past the cap, an award earns no bonus; ended is final.
func TestCampaignRules(t *testing.T) {
	e := newEnv(t, envConfig{})
	e.seedTerms(t)
	c := fuelCampaign(t, 10_000, 150)
	c.Multiplier, c.FixedBonusPoints, c.MinBasePoints = settlement.Campaign{}.Multiplier, 100, 50
	e.createCampaign(t, c)
	bonusOf := func(cmd settlement.Command) int64 {
		var n int64
		for _, b := range e.must(t, cmd).Bonuses {
			n += b.Points
		}
		return n
	}
	steps := []struct {
		name string
		cmd  settlement.Command
		want int64
	}{
		{"below the minimum", award(fuel, "m1", "k1", 49), 0},
		{"fixed bonus", award(fuel, "m1", "k2", 50), 100},
		{"not a participating partner", award(acme, "m1", "k3", 500), 0},
		{"what is left of the cap", award(fuel, "m1", "k4", 500), 50},
		{"cap reached", award(fuel, "m1", "k5", 500), 0},
		{"another member", award(fuel, "m2", "k6", 500), 100},
	}
	for _, s := range steps {
		if got := bonusOf(s.cmd); got != s.want {
			t.Errorf("%s: got bonus %d, want %d", s.name, got, s.want)
		}
	}
	ctx := ctxFor(t)
	if _, err := e.store.SetCampaignStatus(ctx, c.ID, settlement.CampaignPaused); err != nil {
		t.Fatal(err)
	}
	if got := bonusOf(award(fuel, "m3", "k7", 500)); got != 0 {
		t.Errorf("paused: got bonus %d, want 0", got)
	}
	if _, err := e.store.SetCampaignStatus(ctx, c.ID, settlement.CampaignActive); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(25 * time.Hour)
	if got := bonusOf(award(fuel, "m3", "k8", 500)); got != 0 {
		t.Errorf("after the window: got bonus %d, want 0", got)
	}
	if _, err := e.store.SetCampaignStatus(ctx, c.ID, settlement.CampaignEnded); err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.SetCampaignStatus(ctx, c.ID, settlement.CampaignActive); !errors.Is(err, settlement.ErrCampaignEnded) {
		t.Errorf("resume after end: got %v, want %v", err, settlement.ErrCampaignEnded)
	}
	got, err := e.store.GetCampaign(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != settlement.CampaignEnded || got.BudgetRemainingPoints != 10_000-250 || len(got.Sponsors) != 2 {
		t.Errorf("GetCampaign: got %+v, want ended with 9750 left and 2 sponsors", got)
	}
	if _, err := e.store.CreateCampaign(ctx, c, e.clock.Now()); !errors.Is(err, settlement.ErrCampaignExists) {
		t.Errorf("CreateCampaign again: got %v, want %v", err, settlement.ErrCampaignExists)
	}
	c.ID, c.Partners = "other", []string{"nobody"}
	if _, err := e.store.CreateCampaign(ctx, c, e.clock.Now()); !errors.Is(err, settlement.ErrCampaignRejected) {
		t.Errorf("CreateCampaign with an unknown partner: got %v, want %v", err, settlement.ErrCampaignRejected)
	}
}

// campaignExample is the README's worked example: fuel-2x with bonus lots living a year (so
// they are spent first); a member buys 1001 points of fuel (bonus 1001), then redeems 1500 at
// bean-coffee: 1001 from the campaign lot, 499 from city-fuel's.
func (e *env) campaignExample(t *testing.T) time.Time {
	t.Helper()
	e.seedTerms(t)
	c := fuelCampaign(t, 100_000, 0)
	c.LotLifetime = 365 * 24 * time.Hour
	e.createCampaign(t, c)
	out := e.must(t, award(fuel, "m-example", "fuel", 1001))
	if len(out.Bonuses) != 1 || out.Bonuses[0].Points != 1001 {
		t.Fatalf("bonuses: got %+v, want one of 1001", out.Bonuses)
	}
	wantOutcomeBalance(t, out, 2002, 0)
	e.must(t, redeem(bean, "m-example", "coffee", 1500))
	e.clock.Advance(time.Hour)
	return e.clock.Now().Add(-30 * time.Minute)
}

func TestCampaignSettlementHub(t *testing.T) {
	e := newEnv(t, envConfig{})
	rec := e.settle(t, e.campaignExample(t))
	// acme-air pays 601 points (largest remainder of 60% of 1001) × 0.0100; city-fuel its
	// award, 1001 × 0.0110 = 11.011 -> 11.01, and 400 × 0.0110; bean-coffee is reimbursed
	// 1500 × 0.0090.
	wantNets(t, rec, map[string]string{acme: "-6.01", fuel: "-15.41", bean: "13.50", "operator": "7.92"})
	if got, want := e.lineTexts(t, rec.ID), "acme-air campaign_issuance campaign:fuel-2x 601 -6.01"; !strings.Contains(got, want) {
		t.Errorf("lines: got\n%s\nwant a line %q", got, want)
	}
}

func TestCampaignSettlementBilateral(t *testing.T) {
	e := newEnv(t, envConfig{})
	if err := e.store.SetSetting(ctxFor(t), "settlement_model", "bilateral"); err != nil {
		t.Fatal(err)
	}
	rec := e.settle(t, e.campaignExample(t))
	// bean-coffee is owed 1001 × 0.0090 = 9.009 -> 9.01 for the campaign points: 901 cents,
	// 541 from acme-air and 360 from city-fuel; and 499 × 0.0090 = 4.491 -> 4.49 by city-fuel.
	wantNets(t, rec, map[string]string{acme: "-5.41", fuel: "-8.09", bean: "13.50", "operator": "0.00"})
	lines := e.lineTexts(t, rec.ID)
	for _, want := range []string{
		"bean-coffee campaign_redemption_receivable campaign:fuel-2x 1001 9.01",
		"acme-air campaign_redemption_owed campaign:fuel-2x:bean-coffee 601 -5.41",
		"city-fuel campaign_redemption_owed campaign:fuel-2x:bean-coffee 400 -3.60",
	} {
		if !strings.Contains(lines, want) {
			t.Errorf("lines: got\n%s\nwant a line %q", lines, want)
		}
	}
}

// lineTexts renders a run's lines as "partner kind counterparty points amount", one a line.
func (e *env) lineTexts(t *testing.T, runID int64) string {
	t.Helper()
	rows, err := e.pool.Query(ctxFor(t), `SELECT partner_id || ' ' || kind || ' ' || counterparty || ' ' || points::TEXT || ' ' || amount::TEXT
		FROM settlement_lines WHERE run_id = $1 ORDER BY partner_id, line_no`, runID)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
