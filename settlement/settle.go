package settlement

import (
	"fmt"
	"strings"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// Model says how settlement turns the period's ledger into obligations (DESIGN.md §5).
type Model string

// Settlement models.
const (
	ModelHub       Model = "hub"
	ModelBilateral Model = "bilateral"
)

// Operator is the counterparty name of the operator in hub statements.
const Operator = "operator"

// FlowAggregate is one group of a period's partner transactions, aggregated in the database.
type FlowAggregate struct {
	PartnerID string
	Kind      Kind // award, redeem, capture or reversal
	Reverses  Kind // for a reversal: the kind it reverses
	Version   int64
	Late      bool
	Points    int64
	Txns      int64
}

// LineageAggregate is one group of redeemed (or, Reversal, given back) points by issuer and
// redeemer, from lot lineage.
type LineageAggregate struct {
	Issuer   string // "partner:<id>" (or "campaign:<id>")
	Redeemer string
	Version  int64 // the redeemer's price-book version stamped on the redemption
	Late     bool
	Reversal bool
	Points   int64
	Txns     int64
}

// PeriodData is everything a run reads from its snapshot: aggregates only, so memory is
// bounded by partners and partner pairs, not by transactions.
type PeriodData struct {
	Period         int64
	PreviousCutoff time.Time
	Cutoff         time.Time
	Flows          []FlowAggregate
	Lineage        []LineageAggregate
	// Ledger totals from entries, independent of Flows: points issued (net of award
	// reversals) and redeemed (net of redemption reversals) per partner.
	LedgerIssued   map[string]int64
	LedgerRedeemed map[string]int64
	// Campaigns are the period's bonus points by campaign and sponsor terms; CampaignSponsors
	// every campaign's sponsors (for bilateral redemptions); LedgerCampaigns the bonus points
	// issued net of reversals per campaign, from the campaign:<id> accounts' entries.
	Campaigns        []CampaignAggregate
	CampaignSponsors map[string][]Sponsor
	LedgerCampaigns  map[string]int64
	Terms            map[TermsKey]PriceTerms
	Transactions     int64
	Late             int64
}

// TermsKey names one price-book version.
type TermsKey struct {
	PartnerID string
	Version   int64
}

// Line is one priced statement line. Amount is signed: positive means the partner receives.
type Line struct {
	Kind         string
	Counterparty string
	Version      int64
	Points       int64
	Rate         apd.Decimal
	Amount       apd.Decimal
	Late         bool
	Txns         int64
}

// Position is a partner's netting result.
type Position struct {
	PartnerID       string
	GrossPayable    apd.Decimal
	GrossReceivable apd.Decimal
	Net             apd.Decimal
}

// Payment is one payment instruction after multilateral netting.
type Payment struct {
	From, To string
	Amount   apd.Decimal
}

// MatrixCell is M[issuer][redeemer]: points issued by Issuer redeemed at Redeemer (net).
type MatrixCell struct {
	Issuer, Redeemer string
	Points           int64
}

// Check is one verification stored with a run.
type Check struct {
	Name   string `json:"name"`
	Passed bool   `json:"passed"`
	Detail string `json:"detail"`
}

// Result is a computed settlement of one period.
type Result struct {
	Model           Model
	Currency        string
	Lines           map[string][]Line // by partner id, in statement order
	Positions       []Position        // by partner id
	Payments        []Payment
	OperatorRevenue apd.Decimal
	GrossTotal      apd.Decimal
	NettedTotal     apd.Decimal
	Matrix          []MatrixCell
	Checks          []Check
}

// Passed reports whether every check passed.
func (r Result) Passed() bool {
	for _, c := range r.Checks {
		if !c.Passed {
			return false
		}
	}
	return true
}

// ClearingAccount is the payer or payee of netted payments.
const ClearingAccount = "clearing"

// money is the decimal context: 34 digits, half-even rounding to minor units.
var money = apd.BaseContext.WithPrecision(34)

func init() { money.Rounding = apd.RoundHalfEven }

// minorUnits is the number of decimals of every supported currency (EUR, USD, GBP...).
const minorUnits = 2

// priced returns round_half_even(points × rate × factor) to minor units, where factor is
// nil for 1. Rounding happens once per line.
func priced(points int64, rate *apd.Decimal, factor *apd.Decimal) (apd.Decimal, error) {
	var out apd.Decimal
	if _, err := money.Mul(&out, apd.New(points, 0), rate); err != nil {
		return out, err
	}
	if factor != nil {
		if _, err := money.Mul(&out, &out, factor); err != nil {
			return out, err
		}
	}
	_, err := money.Quantize(&out, &out, -minorUnits)
	return out, err
}

func negate(d apd.Decimal) apd.Decimal {
	var out apd.Decimal
	out.Neg(&d)
	return out
}

// partnerOf strips the "partner:" prefix of an issuer account.
func partnerOf(issuer string) string { return strings.TrimPrefix(issuer, "partner:") }

// Compute prices a period under model. It fails only on impossible input (missing terms are
// reported as a failed check, so the run is stored as failed rather than lost).
func Compute(model Model, d PeriodData) (Result, error) {
	r := Result{Model: model, Lines: map[string][]Line{}}
	b := &builder{res: &r, data: d, lines: map[lineKey]*Line{}}
	var err error
	switch model {
	case ModelHub:
		err = b.hub()
	case ModelBilateral:
		err = b.bilateral()
	default:
		return r, fmt.Errorf("unknown settlement model %q", model)
	}
	if err != nil {
		return r, err
	}
	b.flush()
	r.Matrix = matrix(d.Lineage)
	if err := net(&r); err != nil {
		return r, err
	}
	r.Checks = append(b.checks, checks(r, d)...)
	return r, nil
}
