package settlement

import (
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/apd/v3"
)

// CampaignStatus is a campaign's state. Only active campaigns award bonuses; ended is final.
type CampaignStatus string

// Campaign statuses, as stored.
const (
	CampaignActive CampaignStatus = "active"
	CampaignPaused CampaignStatus = "paused"
	CampaignEnded  CampaignStatus = "ended"
)

// Limits on campaigns.
const (
	MaxCampaignSponsors  = 16
	MaxCampaignPartners  = 64
	MaxCampaignNameLen   = 128
	MaxCampaignBudget    = 1_000_000_000_000
	MaxCampaignMultipler = 100
	ShareBpsTotal        = 10_000
	MinCampaignLotLife   = time.Hour
	MaxCampaignLotLife   = 100 * 365 * 24 * time.Hour
)

// Sponsor is a partner co-funding a campaign's bonuses with a share in basis points.
type Sponsor struct {
	PartnerID string
	ShareBps  int64
}

// Campaign is a co-branded bonus: at its partners, inside its window, an award earns a bonus
// (Multiplier or FixedBonusPoints) funded by its sponsors in their shares, within a total
// budget and a per-member cap.
type Campaign struct {
	ID       string
	Name     string
	Status   CampaignStatus
	StartsAt time.Time // inclusive
	EndsAt   time.Time // exclusive
	// Multiplier m of the base award: bonus = floor(base × (m − 1)). Zero when
	// FixedBonusPoints is the rule.
	Multiplier       apd.Decimal
	FixedBonusPoints int64
	MinBasePoints    int64 // awards below it earn no bonus (0: any)
	MemberCapPoints  int64 // bonus points one member may earn in all (0: no cap)
	BudgetPoints     int64
	LotLifetime      time.Duration // of bonus lots; 0: the coalition policy
	Sponsors         []Sponsor     // by partner id
	Partners         []string      // where the campaign applies, sorted

	// Read back only.
	BudgetRemainingPoints int64
	CreatedAt             time.Time
}

// Bonus is one campaign bonus applied to (or taken back from) a member by a transaction.
type Bonus struct {
	CampaignID    string `json:"campaign_id"`
	Points        int64  `json:"points"`
	TransactionID string `json:"transaction_id"`
}

// CampaignAccount is the ledger account a campaign's bonuses are issued from.
func CampaignAccount(id string) string { return "campaign:" + id }

// campaignIDRE is the partner id pattern: campaign ids appear in account names the same way.
var campaignIDRE = partnerIDRE

// ValidateCampaign checks a new campaign and returns a *ValidationError listing every problem.
// Whether the sponsors and partners are registered is the store's to check.
func ValidateCampaign(c Campaign) error {
	var v ValidationError
	if !campaignIDRE.MatchString(c.ID) {
		v.add("campaign.id", "must match %s", campaignIDRE)
	}
	if n := utf8.RuneCountInString(c.Name); n == 0 || n > MaxCampaignNameLen || !utf8.ValidString(c.Name) {
		v.add("campaign.name", "must be 1-%d characters", MaxCampaignNameLen)
	}
	if c.StartsAt.IsZero() || !c.EndsAt.After(c.StartsAt) {
		v.add("campaign.ends_at", "must be after starts_at, and both are required")
	}
	validateRule(&v, c)
	if c.MinBasePoints < 0 || c.MinBasePoints > MaxPointsPerCommand {
		v.add("campaign.min_base_points", "must be 0-%d", MaxPointsPerCommand)
	}
	if c.MemberCapPoints < 0 {
		v.add("campaign.member_cap_points", "must be 0 (no cap) or positive")
	}
	if c.BudgetPoints <= 0 || c.BudgetPoints > MaxCampaignBudget {
		v.add("campaign.budget_points", "must be 1-%d", int64(MaxCampaignBudget))
	}
	if c.LotLifetime != 0 && (c.LotLifetime < MinCampaignLotLife || c.LotLifetime > MaxCampaignLotLife) {
		v.add("campaign.lot_lifetime", "must be 0 (coalition policy) or %s-%s", MinCampaignLotLife, MaxCampaignLotLife)
	}
	validateSponsors(&v, c.Sponsors)
	validateParticipants(&v, c.Partners)
	return v.orNil()
}

func validateRule(v *ValidationError, c Campaign) {
	hasMultiplier := !c.Multiplier.IsZero()
	switch {
	case hasMultiplier == (c.FixedBonusPoints != 0):
		v.add("campaign.rule", "set exactly one of multiplier and fixed_bonus_points")
	case hasMultiplier:
		if c.Multiplier.Cmp(apd.New(1, 0)) <= 0 || c.Multiplier.Cmp(apd.New(MaxCampaignMultipler, 0)) > 0 || c.Multiplier.Exponent < -4 {
			v.add("campaign.multiplier", "must be above 1 and at most %d, with at most 4 decimals", MaxCampaignMultipler)
		}
	case c.FixedBonusPoints < 0 || c.FixedBonusPoints > MaxPointsPerCommand:
		v.add("campaign.fixed_bonus_points", "must be 1-%d", MaxPointsPerCommand)
	}
}

func validateSponsors(v *ValidationError, sponsors []Sponsor) {
	if len(sponsors) == 0 || len(sponsors) > MaxCampaignSponsors {
		v.add("campaign.sponsors", "must name 1-%d sponsors", MaxCampaignSponsors)
		return
	}
	seen := map[string]bool{}
	var total int64
	for i, s := range sponsors {
		if !partnerIDRE.MatchString(s.PartnerID) || seen[s.PartnerID] {
			v.add(fmt.Sprintf("campaign.sponsors[%d].partner_id", i), "must be a distinct partner id")
		}
		seen[s.PartnerID] = true
		if s.ShareBps <= 0 || s.ShareBps > ShareBpsTotal {
			v.add(fmt.Sprintf("campaign.sponsors[%d].share_bps", i), "must be 1-%d", ShareBpsTotal)
			return
		}
		total += s.ShareBps
	}
	if total != ShareBpsTotal {
		v.add("campaign.sponsors", "shares sum to %d basis points, want exactly %d", total, ShareBpsTotal)
	}
}

func validateParticipants(v *ValidationError, partners []string) {
	if len(partners) == 0 || len(partners) > MaxCampaignPartners {
		v.add("campaign.partners", "must name 1-%d partners", MaxCampaignPartners)
		return
	}
	seen := map[string]bool{}
	for i, p := range partners {
		if !partnerIDRE.MatchString(p) || seen[p] {
			v.add(fmt.Sprintf("campaign.partners[%d]", i), "must be a distinct partner id")
		}
		seen[p] = true
	}
}

// ValidateCampaignID checks a campaign id used by a read or a status change.
func ValidateCampaignID(id string) error {
	var v ValidationError
	if !campaignIDRE.MatchString(id) {
		v.add("id", "must match %s", campaignIDRE)
	}
	return v.orNil()
}

// BonusPoints is the bonus the campaign's rule gives a base award, before the member's cap
// and the budget: 0 below the minimum base, FixedBonusPoints, or floor(base × (m − 1)).
func (c Campaign) BonusPoints(base int64) int64 {
	if base < c.MinBasePoints {
		return 0
	}
	if c.Multiplier.IsZero() {
		return c.FixedBonusPoints
	}
	ctx := apd.BaseContext.WithPrecision(34)
	ctx.Rounding = apd.RoundFloor
	var extra, out apd.Decimal
	if _, err := ctx.Sub(&extra, &c.Multiplier, apd.New(1, 0)); err != nil {
		return 0
	}
	if _, err := ctx.Mul(&out, &extra, apd.New(base, 0)); err != nil {
		return 0
	}
	if _, err := ctx.Quantize(&out, &out, 0); err != nil {
		return 0
	}
	n, err := out.Int64()
	if err != nil || n < 0 {
		return 0
	}
	return n
}
