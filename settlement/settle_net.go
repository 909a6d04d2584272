package settlement

import (
	"fmt"
	"sort"

	"github.com/cockroachdb/apd/v3"
)

// matrix folds lineage into M[issuer][redeemer], net of reversals, dropping zero cells.
func matrix(lineage []LineageAggregate) []MatrixCell {
	type key struct{ issuer, redeemer string }
	sum := map[key]int64{}
	for _, g := range lineage {
		p := g.Points
		if g.Reversal {
			p = -p
		}
		sum[key{partnerOf(g.Issuer), g.Redeemer}] += p
	}
	var out []MatrixCell
	for k, p := range sum {
		if p != 0 {
			out = append(out, MatrixCell{Issuer: k.issuer, Redeemer: k.redeemer, Points: p})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Issuer != out[j].Issuer {
			return out[i].Issuer < out[j].Issuer
		}
		return out[i].Redeemer < out[j].Redeemer
	})
	return out
}

// net computes each partner's position, nets every obligation multilaterally into at most one
// payment per partner to or from the clearing account, and the operator's revenue.
func net(r *Result) error {
	partners := make([]string, 0, len(r.Lines))
	for p := range r.Lines {
		partners = append(partners, p)
	}
	sort.Strings(partners)
	var sumNets apd.Decimal
	for _, p := range partners {
		pos := Position{PartnerID: p}
		for _, l := range r.Lines[p] {
			target := &pos.GrossReceivable
			amount := l.Amount
			if amount.Negative {
				target, amount = &pos.GrossPayable, negate(amount)
			}
			if _, err := money.Add(target, target, &amount); err != nil {
				return err
			}
			if _, err := money.Add(&pos.Net, &pos.Net, &l.Amount); err != nil {
				return err
			}
		}
		if _, err := money.Add(&sumNets, &sumNets, &pos.Net); err != nil {
			return err
		}
		if _, err := money.Add(&r.GrossTotal, &r.GrossTotal, &pos.GrossPayable); err != nil {
			return err
		}
		if _, err := money.Add(&r.GrossTotal, &r.GrossTotal, &pos.GrossReceivable); err != nil {
			return err
		}
		var abs apd.Decimal
		abs.Abs(&pos.Net)
		if _, err := money.Add(&r.NettedTotal, &r.NettedTotal, &abs); err != nil {
			return err
		}
		for _, d := range []*apd.Decimal{&pos.GrossPayable, &pos.GrossReceivable, &pos.Net} {
			if _, err := money.Quantize(d, d, -minorUnits); err != nil {
				return err
			}
		}
		r.Positions = append(r.Positions, pos)
		if !pos.Net.IsZero() {
			pay := Payment{From: ClearingAccount, To: p, Amount: abs}
			if pos.Net.Negative {
				pay.From, pay.To = p, ClearingAccount
			}
			r.Payments = append(r.Payments, pay)
		}
	}
	r.OperatorRevenue = negate(sumNets)
	for _, d := range []*apd.Decimal{&r.OperatorRevenue, &r.GrossTotal, &r.NettedTotal} {
		if _, err := money.Quantize(d, d, -minorUnits); err != nil {
			return fmt.Errorf("quantize: %w", err)
		}
	}
	return nil
}

// checks verifies the result against itself and against the ledger's own totals.
func checks(r Result, d PeriodData) []Check {
	var out []Check
	var sum apd.Decimal
	for _, p := range r.Positions {
		_, _ = money.Add(&sum, &sum, &p.Net)
	}
	_, _ = money.Add(&sum, &sum, &r.OperatorRevenue)
	out = append(out, Check{Name: "net positions + operator revenue = 0", Passed: sum.IsZero(),
		Detail: fmt.Sprintf("sum %s", sum.Text('f'))})
	out = append(out, paymentsCheck(r))
	issued, redeemed := statementPoints(r)
	lineage := map[string]int64{}
	for _, g := range d.Lineage {
		lineage[g.Redeemer] += pickPoints(g.Reversal, g.Points)
	}
	out = append(out, comparePoints("redeemed points traced to issuers equal ledger redemptions", lineage, d.LedgerRedeemed))
	if r.Model == ModelHub {
		out = append(out, comparePoints("statement issued points equal ledger", issued, d.LedgerIssued))
		out = append(out, comparePoints("statement redeemed points equal ledger", redeemed, d.LedgerRedeemed))
	} else {
		out = append(out, comparePoints("statement redeemed points equal ledger", redeemed, d.LedgerRedeemed))
	}
	return append(out, campaignChecks(r, d)...)
}

func pickPoints(reversal bool, p int64) int64 {
	if reversal {
		return -p
	}
	return p
}

// statementPoints sums the statement's issuance and redemption points per partner.
func statementPoints(r Result) (issued, redeemed map[string]int64) {
	issued, redeemed = map[string]int64{}, map[string]int64{}
	for p, lines := range r.Lines {
		for _, l := range lines {
			switch {
			case l.Kind == "issuance":
				issued[p] += l.Points
			case l.Kind == "issuance_reversal":
				issued[p] -= l.Points
			case l.Kind == "reimbursement" || l.Kind == "redemption_receivable" || l.Kind == LineCampaignReceivable:
				redeemed[p] += l.Points
			case l.Kind == "reimbursement_reversal" || l.Kind == "redemption_receivable_reversal" || l.Kind == LineCampaignReceivable+"_reversal":
				redeemed[p] -= l.Points
			}
		}
	}
	return issued, redeemed
}

func comparePoints(name string, got, want map[string]int64) Check {
	c := Check{Name: name, Passed: true}
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		if got[k] != want[k] {
			c.Passed = false
			c.Detail += fmt.Sprintf("%s: %d vs ledger %d; ", k, got[k], want[k])
		}
	}
	if c.Passed {
		c.Detail = fmt.Sprintf("%d partners agree", len(names))
	}
	return c
}

// Renet recomputes positions, payments and totals of r from its lines, for a run read back
// from storage: the stored lines are the source of truth.
func Renet(r *Result) error {
	r.Positions, r.Payments = nil, nil
	r.OperatorRevenue, r.GrossTotal, r.NettedTotal = apd.Decimal{}, apd.Decimal{}, apd.Decimal{}
	return net(r)
}

// paymentsCheck checks the payment instructions finance executes against the positions they
// come from: at most one payment per partner, each equal to its net position in amount and
// direction, and what flows into the clearing account minus what flows out of it equals the
// operator's revenue. (Operator revenue is the negated sum of the positions, so the first check
// holds by construction; this one tests the instructions themselves.)
func paymentsCheck(r Result) Check {
	c := Check{Name: "payments: one per partner at most, each its net, into clearing − out = operator revenue", Passed: true}
	fail := func(format string, args ...any) {
		if c.Passed {
			c.Passed, c.Detail = false, fmt.Sprintf(format, args...)
		}
	}
	nets := map[string]apd.Decimal{}
	for _, p := range r.Positions {
		nets[p.PartnerID] = p.Net
	}
	paid := map[string]bool{}
	var clearing apd.Decimal
	for _, pay := range r.Payments {
		partner, signed := pay.To, pay.Amount // the clearing account pays the partner: +net
		switch {
		case pay.From == ClearingAccount && pay.To != ClearingAccount:
			_, _ = money.Sub(&clearing, &clearing, &pay.Amount)
		case pay.To == ClearingAccount && pay.From != ClearingAccount:
			partner, signed = pay.From, negate(pay.Amount)
			_, _ = money.Add(&clearing, &clearing, &pay.Amount)
		default:
			fail("payment %s -> %s does not go through the clearing account", pay.From, pay.To)
			continue
		}
		if paid[partner] {
			fail("%s has more than one payment", partner)
		}
		paid[partner] = true
		net := nets[partner]
		if signed.Cmp(&net) != 0 {
			fail("%s's payment %s differs from its net position %s", partner, signed.Text('f'), net.Text('f'))
		}
	}
	for p, net := range nets {
		if !net.IsZero() && !paid[p] {
			fail("%s has a net position of %s and no payment", p, net.Text('f'))
		}
	}
	if clearing.Cmp(&r.OperatorRevenue) != 0 {
		fail("into clearing − out = %s, operator revenue %s", clearing.Text('f'), r.OperatorRevenue.Text('f'))
	}
	if c.Passed {
		c.Detail = fmt.Sprintf("%d payments, clearing keeps %s", len(r.Payments), clearing.Text('f'))
	}
	return c
}
