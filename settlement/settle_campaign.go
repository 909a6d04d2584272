package settlement

import (
	"fmt"
	"sort"
	"strings"

	"github.com/cockroachdb/apd/v3"
)

// Statement line kinds of co-branded campaigns. Hub: each sponsor pays its share of the bonus
// points at its own issue price (campaign_issuance, counterparty campaign:<id>). Bilateral: the
// redeemer is owed campaign points at its rate (campaign_redemption_receivable, counterparty
// campaign:<id>) and each sponsor owes its share of that amount (campaign_redemption_owed,
// counterparty campaign:<id>:<redeemer>). Each has a _reversal twin.
const (
	LineCampaignIssuance   = "campaign_issuance"
	LineCampaignReceivable = "campaign_redemption_receivable"
	LineCampaignOwed       = "campaign_redemption_owed"
)

// CampaignSponsorTerms is a sponsor's share and the price version in force when a bonus was
// issued (stamped on the bonus, so a re-run prices it the same).
type CampaignSponsorTerms struct {
	PartnerID string
	ShareBps  int64
	Version   int64
}

// CampaignAggregate is one group of a period's bonus points of a campaign (or, Reversal, of
// bonus points taken back by award reversals), aggregated in the database.
type CampaignAggregate struct {
	CampaignID string
	Sponsors   []CampaignSponsorTerms // by partner id
	Reversal   bool
	Late       bool
	Points     int64
	Txns       int64
}

// campaignOf returns the campaign id of a lot issuer "campaign:<id>".
func campaignOf(issuer string) (string, bool) { return strings.CutPrefix(issuer, "campaign:") }

// hubCampaigns charges each campaign's bonus points to its sponsors at issuance: the points
// are allocated by share (largest remainder), then each sponsor's points are priced at its
// own issue price, once per line.
func (b *builder) hubCampaigns() error {
	for _, g := range b.data.Campaigns {
		weights := make([]int64, len(g.Sponsors))
		for i, s := range g.Sponsors {
			weights[i] = s.ShareBps
		}
		shares, err := Allocate(g.Points, weights)
		if err != nil {
			return fmt.Errorf("campaign %s: %w", g.CampaignID, err)
		}
		for i, s := range g.Sponsors {
			t, ok := b.terms(s.PartnerID, s.Version)
			if !ok || shares[i] == 0 {
				continue
			}
			b.add(lineKey{s.PartnerID, pick(g.Reversal, LineCampaignIssuance+"_reversal", LineCampaignIssuance), CampaignAccount(g.CampaignID), s.Version, g.Late},
				shares[i], g.Txns, rateSpec{rate: t.IssuePrice, sign: pickSign(g.Reversal, 1, -1)})
		}
	}
	return nil
}

// bilateralCampaigns settles campaign points redeemed at B: B's line is priced once at B's
// rate, and that amount, in minor units, is allocated to the sponsors by share (largest
// remainder), so the sponsors' lines sum exactly to B's. The lines are final (not re-priced by
// flush); lineage is unique per key, merged here anyway.
func (b *builder) bilateralCampaigns(lineage []LineageAggregate) error {
	type key struct {
		campaign, redeemer string
		version            int64
		late, reversal     bool
	}
	merged := map[key]*LineageAggregate{}
	var keys []key
	for _, g := range lineage {
		id, _ := campaignOf(g.Issuer)
		k := key{id, g.Redeemer, g.Version, g.Late, g.Reversal}
		if m, ok := merged[k]; ok {
			m.Points += g.Points
			m.Txns += g.Txns
			continue
		}
		g := g
		merged[k] = &g
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
	for _, k := range keys {
		g := merged[k]
		t, ok := b.terms(k.redeemer, k.version)
		if !ok {
			continue
		}
		if err := b.campaignRedemption(k.campaign, *g, t); err != nil {
			return err
		}
	}
	return nil
}

// campaignRedemption adds the redeemer's and the sponsors' lines of one campaign lineage group.
func (b *builder) campaignRedemption(campaignID string, g LineageAggregate, t PriceTerms) error {
	sponsors, ok := b.data.CampaignSponsors[campaignID]
	if !ok {
		b.checks = append(b.checks, Check{Name: "campaign sponsors exist", Detail: "no sponsors for campaign " + campaignID})
		return nil
	}
	amount, err := priced(g.Points, &t.ReimbursementRate, nil)
	if err != nil {
		return err
	}
	cents, err := minor(amount)
	if err != nil {
		return err
	}
	weights := make([]int64, len(sponsors))
	for i, s := range sponsors {
		weights[i] = s.ShareBps
	}
	centShares, err := Allocate(cents, weights)
	if err != nil {
		return err
	}
	pointShares, err := Allocate(g.Points, weights)
	if err != nil {
		return err
	}
	suffix := pick(g.Reversal, "_reversal", "")
	recv := Line{Kind: LineCampaignReceivable + suffix, Counterparty: CampaignAccount(campaignID), Version: g.Version,
		Points: g.Points, Rate: t.ReimbursementRate, Amount: signed(amount, !g.Reversal), Late: g.Late, Txns: g.Txns}
	b.res.Lines[g.Redeemer] = append(b.res.Lines[g.Redeemer], recv)
	for i, s := range sponsors {
		if centShares[i] == 0 && pointShares[i] == 0 {
			continue
		}
		owed := Line{Kind: LineCampaignOwed + suffix, Counterparty: CampaignAccount(campaignID) + ":" + g.Redeemer, Version: g.Version,
			Points: pointShares[i], Rate: t.ReimbursementRate, Amount: signed(*apd.New(centShares[i], -minorUnits), g.Reversal), Late: g.Late, Txns: g.Txns}
		b.res.Lines[s.PartnerID] = append(b.res.Lines[s.PartnerID], owed)
	}
	return nil
}

// minor converts a non-negative amount already rounded to minor units into an integer count.
func minor(d apd.Decimal) (int64, error) {
	var scaled apd.Decimal
	scaled.Set(&d)
	scaled.Exponent += minorUnits
	if _, err := money.Quantize(&scaled, &scaled, 0); err != nil {
		return 0, err
	}
	return scaled.Int64()
}

// signed returns d when positive is true, else −d.
func signed(d apd.Decimal, positive bool) apd.Decimal {
	if positive {
		return d
	}
	return negate(d)
}

// campaignChecks compares the hub statements' campaign issuance with the campaign accounts'
// own entries for the period: the bonus points charged to sponsors equal the bonus points the
// ledger issued, per campaign.
func campaignChecks(r Result, d PeriodData) []Check {
	if r.Model != ModelHub {
		return nil
	}
	got := map[string]int64{}
	for _, lines := range r.Lines {
		for _, l := range lines {
			id, _ := campaignOf(l.Counterparty)
			switch l.Kind {
			case LineCampaignIssuance:
				got[id] += l.Points
			case LineCampaignIssuance + "_reversal":
				got[id] -= l.Points
			}
		}
	}
	return []Check{comparePoints("statement campaign points equal ledger", got, d.LedgerCampaigns)}
}
