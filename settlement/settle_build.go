package settlement

import (
	"fmt"
	"sort"

	"github.com/cockroachdb/apd/v3"
)

// Line kinds, in the order they appear on a statement.
var lineOrder = []string{
	"issuance", "issuance_reversal",
	"reimbursement", "reimbursement_reversal",
	"redemption_receivable", "redemption_receivable_reversal",
	"redemption_owed", "redemption_owed_reversal",
	"fee", "fee_reversal",
	LineBreakageReturn,
	LineCampaignIssuance, LineCampaignIssuance + "_reversal",
	LineCampaignReceivable, LineCampaignReceivable + "_reversal",
	LineCampaignOwed, LineCampaignOwed + "_reversal",
}

type lineKey struct {
	partner, kind, counterparty string
	version                     int64
	late                        bool
}

// builder accumulates points per line key; amounts are priced once per line in flush.
type builder struct {
	res    *Result
	data   PeriodData
	lines  map[lineKey]*Line
	rates  map[lineKey]rateSpec
	checks []Check
}

// rateSpec says how a line is priced: points × rate × factor (factor nil = 1), sign ±1.
type rateSpec struct {
	rate   apd.Decimal
	factor *apd.Decimal
	sign   int
}

func (b *builder) add(k lineKey, points, txns int64, spec rateSpec) {
	if b.rates == nil {
		b.rates = map[lineKey]rateSpec{}
	}
	l, ok := b.lines[k]
	if !ok {
		l = &Line{Kind: k.kind, Counterparty: k.counterparty, Version: k.version, Late: k.late, Rate: spec.rate}
		b.lines[k] = l
		b.rates[k] = spec
	}
	l.Points += points
	l.Txns += txns
}

// terms returns the stamped version's terms, recording a failed check when it is missing.
func (b *builder) terms(partner string, version int64) (PriceTerms, bool) {
	t, ok := b.data.Terms[TermsKey{partner, version}]
	if !ok {
		b.checks = append(b.checks, Check{Name: "price terms exist", Passed: false,
			Detail: fmt.Sprintf("no price terms version %d for partner %s", version, partner)})
		return t, false
	}
	if b.res.Currency == "" {
		b.res.Currency = t.Currency
	} else if b.res.Currency != t.Currency {
		b.checks = append(b.checks, Check{Name: "one settlement currency", Passed: false,
			Detail: fmt.Sprintf("%s uses %s, others %s", partner, t.Currency, b.res.Currency)})
	}
	return t, true
}

func feeFactor(bps int64) *apd.Decimal { return apd.New(bps, -4) }

// hub: issuers pay at issuance, redeemers are reimbursed, the operator keeps fees.
func (b *builder) hub() error {
	for _, f := range b.data.Flows {
		t, ok := b.terms(f.PartnerID, f.Version)
		if !ok {
			continue
		}
		kind, reversal := f.Kind, false
		if kind == KindReversal {
			kind, reversal = f.Reverses, true
		}
		switch kind {
		case KindAward:
			b.add(lineKey{f.PartnerID, pick(reversal, "issuance_reversal", "issuance"), Operator, f.Version, f.Late}, f.Points, f.Txns,
				rateSpec{rate: t.IssuePrice, sign: pickSign(reversal, 1, -1)})
		case KindRedeem, KindCapture:
			b.reimburse(f, t, reversal, Operator)
		case KindExpiry:
			b.breakage(f, t) // settle_breakage.go
		default:
			return fmt.Errorf("unexpected %s flow of kind %s", f.PartnerID, f.Kind)
		}
	}
	return b.hubCampaigns() // settle_campaign.go
}

// reimburse adds a redemption's reimbursement (hub only) and the operator fee (both models).
func (b *builder) reimburse(f FlowAggregate, t PriceTerms, reversal bool, counterparty string) {
	if b.res.Model == ModelHub {
		b.add(lineKey{f.PartnerID, pick(reversal, "reimbursement_reversal", "reimbursement"), counterparty, f.Version, f.Late}, f.Points, f.Txns,
			rateSpec{rate: t.ReimbursementRate, sign: pickSign(reversal, -1, 1)})
	}
	if t.FeeBps > 0 {
		b.add(lineKey{f.PartnerID, pick(reversal, "fee_reversal", "fee"), Operator, f.Version, f.Late}, f.Points, f.Txns,
			rateSpec{rate: t.ReimbursementRate, factor: feeFactor(t.FeeBps), sign: pickSign(reversal, 1, -1)})
	}
}

// bilateral: each redeemed point is owed by its issuer to the redeemer at the redeemer's rate.
func (b *builder) bilateral() error {
	var campaigns []LineageAggregate // owed by sponsors in their shares: settle_campaign.go
	for _, g := range b.data.Lineage {
		if _, ok := campaignOf(g.Issuer); ok {
			campaigns = append(campaigns, g)
			continue
		}
		t, ok := b.terms(g.Redeemer, g.Version)
		if !ok {
			continue
		}
		issuer := partnerOf(g.Issuer)
		b.add(lineKey{g.Redeemer, pick(g.Reversal, "redemption_receivable_reversal", "redemption_receivable"), issuer, g.Version, g.Late}, g.Points, g.Txns,
			rateSpec{rate: t.ReimbursementRate, sign: pickSign(g.Reversal, -1, 1)})
		b.add(lineKey{issuer, pick(g.Reversal, "redemption_owed_reversal", "redemption_owed"), g.Redeemer, g.Version, g.Late}, g.Points, g.Txns,
			rateSpec{rate: t.ReimbursementRate, sign: pickSign(g.Reversal, 1, -1)})
	}
	for _, f := range b.data.Flows {
		if f.Kind == KindRedeem || f.Kind == KindCapture || (f.Kind == KindReversal && f.Reverses != KindAward) {
			if t, ok := b.terms(f.PartnerID, f.Version); ok {
				b.reimburse(f, t, f.Kind == KindReversal, Operator)
			}
		}
	}
	return b.bilateralCampaigns(campaigns)
}

// flush prices every line once and orders each statement.
func (b *builder) flush() {
	for k, l := range b.lines {
		if l.Points == 0 {
			continue
		}
		spec := b.rates[k]
		amount, err := priced(l.Points, &spec.rate, spec.factor)
		if err != nil {
			b.checks = append(b.checks, Check{Name: "amounts computable", Detail: err.Error()})
			continue
		}
		if spec.sign < 0 {
			amount = negate(amount)
		}
		l.Amount = amount
		b.res.Lines[k.partner] = append(b.res.Lines[k.partner], *l)
	}
	rank := map[string]int{}
	for i, k := range lineOrder {
		rank[k] = i
	}
	for _, lines := range b.res.Lines {
		sort.Slice(lines, func(i, j int) bool {
			a, c := lines[i], lines[j]
			if rank[a.Kind] != rank[c.Kind] {
				return rank[a.Kind] < rank[c.Kind]
			}
			if a.Counterparty != c.Counterparty {
				return a.Counterparty < c.Counterparty
			}
			if a.Version != c.Version {
				return a.Version < c.Version
			}
			return !a.Late && c.Late
		})
	}
}

func pick(cond bool, a, b string) string {
	if cond {
		return a
	}
	return b
}

func pickSign(cond bool, a, b int) int {
	if cond {
		return a
	}
	return b
}
