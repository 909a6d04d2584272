package settlement

import (
	"fmt"
	"regexp"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// PriceTerms is one version of a partner's price book. Rates are per point in Currency.
type PriceTerms struct {
	PartnerID         string
	Version           int64
	EffectiveAt       time.Time
	IssuePrice        apd.Decimal // charged per point the partner awards
	ReimbursementRate apd.Decimal // paid per point redeemed at the partner
	FeeBps            int64       // operator fee, basis points of reimbursements
	Currency          string
	BreakageShare     apd.Decimal // fraction of breakage returned to the issuer
	Limits            Limits      // exposure limits of this version
}

// Limits are a partner's exposure limits (issue 7). An award that would cross one is refused
// with ErrPartnerLimitExceeded or ErrMemberLimitExceeded; zero values mean no limit.
type Limits struct {
	// MaxOutstandingValue bounds the value (points × issue price, in Currency) the partner has
	// issued that settlement has not yet charged it for, net of award reversals. nil = none.
	MaxOutstandingValue *apd.Decimal
	// MaxPointsPerTransaction bounds one award's points.
	MaxPointsPerTransaction int64
	// MaxPointsPerMemberDay bounds the points the partner awards one member per UTC day.
	MaxPointsPerMemberDay int64
}

var currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)

// maxRate bounds a per-point price; points are worth cents, not fortunes.
var maxRate = apd.New(1000, 0)

// ValidateTerms checks new terms at time now (effective_at may not be in the past).
func ValidateTerms(t PriceTerms, now time.Time) error {
	var v ValidationError
	if !partnerIDRE.MatchString(t.PartnerID) {
		v.add("terms.partner_id", "must match %s", partnerIDRE)
	}
	checkRate(&v, "terms.issue_price", &t.IssuePrice)
	checkRate(&v, "terms.reimbursement_rate", &t.ReimbursementRate)
	if t.FeeBps < 0 || t.FeeBps > 10000 {
		v.add("terms.fee_bps", "must be between 0 and 10000")
	}
	if !currencyRE.MatchString(t.Currency) {
		v.add("terms.currency", "must be an ISO 4217 code like EUR")
	}
	if t.BreakageShare.Negative || t.BreakageShare.Cmp(apd.New(1, 0)) > 0 || t.BreakageShare.Form != apd.Finite {
		v.add("terms.breakage_share", "must be a fraction between 0 and 1")
	}
	if m := t.Limits.MaxOutstandingValue; m != nil && (m.Form != apd.Finite || m.Sign() <= 0 || m.Exponent < -8) {
		v.add("terms.max_outstanding_value", "must be a positive decimal with at most 8 decimal places")
	}
	if t.Limits.MaxPointsPerTransaction < 0 || t.Limits.MaxPointsPerTransaction > MaxPointsPerCommand {
		v.add("terms.max_points_per_transaction", "must be between 0 (no limit) and %d", MaxPointsPerCommand)
	}
	if t.Limits.MaxPointsPerMemberDay < 0 {
		v.add("terms.max_points_per_member_day", "must not be negative (0 = no limit)")
	}
	if !t.EffectiveAt.IsZero() && t.EffectiveAt.Before(now.Add(-time.Second)) {
		v.add("terms.effective_at", "must not be in the past")
	}
	return v.orNil()
}

func checkRate(v *ValidationError, field string, d *apd.Decimal) {
	if d.Form != apd.Finite || d.Negative || d.Cmp(maxRate) > 0 || d.Exponent < -8 {
		v.add(field, "must be a decimal between 0 and 1000 with at most 8 decimal places")
	}
}

// ParseDecimal parses a money or rate string exactly.
func ParseDecimal(field, s string) (apd.Decimal, error) {
	d, _, err := apd.NewFromString(s)
	if err != nil || d.Form != apd.Finite {
		return apd.Decimal{}, &ValidationError{Violations: []FieldViolation{{Field: field, Description: fmt.Sprintf("%q is not a decimal number", s)}}}
	}
	return *d, nil
}

var partnerIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidatePartner checks a partner registration.
func ValidatePartner(p Partner) error {
	var v ValidationError
	if !partnerIDRE.MatchString(p.ID) {
		v.add("id", "must match %s", partnerIDRE)
	}
	if n := len([]rune(p.Name)); n == 0 || n > 128 {
		v.add("name", "must be 1-128 characters")
	}
	return v.orNil()
}
