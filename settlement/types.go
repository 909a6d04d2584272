package settlement

import "time"

// Op names a mutating command.
type Op string

// The mutating commands a partner can send.
const (
	OpAward     Op = "award"
	OpRedeem    Op = "redeem"
	OpAuthorize Op = "authorize"
	OpCapture   Op = "capture"
	OpVoid      Op = "void"
	OpReverse   Op = "reverse"
)

// Kind says what a ledger transaction did.
type Kind string

// Transaction kinds, as stored.
const (
	KindAward     Kind = "award"
	KindRedeem    Kind = "redeem"
	KindAuthorize Kind = "authorize"
	KindCapture   Kind = "capture"
	KindRelease   Kind = "release"
	KindReversal  Kind = "reversal"
	// A campaign's bonus on an award, and its undoing when the award is reversed (campaign.go).
	KindBonus         Kind = "bonus"
	KindBonusReversal Kind = "bonus_reversal"
	// KindExpiry moves an expired lot's remaining points into coalition:breakage (expiry.go).
	KindExpiry Kind = "expiry"
)

// Reversible reports whether a transaction of kind k can be reversed.
func (k Kind) Reversible() bool {
	return k == KindAward || k == KindRedeem || k == KindCapture
}

// TxnStatus is derived from how much of a transaction has been reversed.
type TxnStatus string

// Transaction statuses.
const (
	StatusPosted            TxnStatus = "posted"
	StatusPartiallyReversed TxnStatus = "partially_reversed"
	StatusReversed          TxnStatus = "reversed"
)

// HoldStatus is the state of an authorized redemption.
type HoldStatus string

// Hold statuses, as stored.
const (
	HoldOpen     HoldStatus = "open"
	HoldCaptured HoldStatus = "captured"
	HoldVoided   HoldStatus = "voided"
	HoldExpired  HoldStatus = "expired"
)

// Limits on commands. They bound what one request can do to the books.
const (
	MaxPointsPerCommand  = 1_000_000_000
	MaxIdempotencyKeyLen = 128 // idempotencyKeyRE
	MaxReferenceLen      = 128
	MaxReasonLen         = 256
	MaxMetadataEntries   = 16
	MaxMetadataKeyLen    = 64
	MaxMetadataValueLen  = 256
	MaxFutureSkew        = 5 * time.Minute
	DefaultHoldTTL       = 15 * time.Minute
	MinHoldTTL           = time.Second
	MaxHoldTTL           = 7 * 24 * time.Hour
	DefaultPageSize      = 50
	MaxPageSize          = 500
)

// Command is one mutating request from a partner. Which fields matter depends on Op; the
// others are zero. PartnerID comes from the caller's verified certificate, never the request.
type Command struct {
	Op             Op
	PartnerID      string
	IdempotencyKey string

	MemberID      string            // award, redeem, authorize
	Points        int64             // award, redeem, authorize; capture and reverse: 0 = all
	Reference     string            // award, redeem, authorize
	OccurredAt    time.Time         // award; zero = now
	Metadata      map[string]string // award
	HoldTTL       time.Duration     // authorize; zero = DefaultHoldTTL
	HoldID        string            // capture, void
	TransactionID string            // reverse
	Reason        string            // reverse
}

// Transaction is one ledger transaction.
type Transaction struct {
	ID             string    `json:"id"`
	PartnerID      string    `json:"partner_id"`
	MemberID       string    `json:"member_id"`
	Kind           Kind      `json:"kind"`
	Points         int64     `json:"points"`
	ReversedPoints int64     `json:"reversed_points"`
	Reference      string    `json:"reference"`
	ReversesID     string    `json:"reverses_id,omitempty"`
	HoldID         string    `json:"hold_id,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
}

// Status derives the transaction's status from its reversed points.
func (t Transaction) Status() TxnStatus {
	switch {
	case t.ReversedPoints == 0:
		return StatusPosted
	case t.ReversedPoints < t.Points:
		return StatusPartiallyReversed
	default:
		return StatusReversed
	}
}

// Balance is a member's points. Posted includes held points; Available = Posted - Held.
type Balance struct {
	MemberID string `json:"member_id"`
	Posted   int64  `json:"posted"`
	Held     int64  `json:"held"`
	// ExpiringSoon is how many of the member's points expire within ExpiringSoonWindow (only
	// filled by balance reads, not by command outcomes).
	ExpiringSoon int64 `json:"expiring_soon,omitempty"`
}

// ExpiringSoonWindow is how far ahead a balance read counts points as expiring soon.
const ExpiringSoonWindow = 30 * 24 * time.Hour

// Available is what can be redeemed or held now.
func (b Balance) Available() int64 { return b.Posted - b.Held }

// Hold is an authorized redemption.
type Hold struct {
	ID             string     `json:"id"`
	PartnerID      string     `json:"partner_id"`
	MemberID       string     `json:"member_id"`
	Points         int64      `json:"points"`
	CapturedPoints int64      `json:"captured_points"`
	Status         HoldStatus `json:"status"`
	ExpiresAt      time.Time  `json:"expires_at"`
}

// Outcome is the result of a mutating command, as first computed and as replayed.
type Outcome struct {
	Transaction Transaction `json:"transaction"`
	Balance     Balance     `json:"balance"`
	Hold        *Hold       `json:"hold,omitempty"`
	// Bonuses are the campaign bonuses an award earned, or an award reversal took back.
	Bonuses []Bonus `json:"bonuses,omitempty"`
	// Replayed is true when the outcome was read back from the idempotency record.
	Replayed bool `json:"-"`
}

// PartnerStatus is a partner's standing in the coalition.
type PartnerStatus string

// Partner statuses, as stored.
const (
	PartnerActive    PartnerStatus = "active"
	PartnerSuspended PartnerStatus = "suspended"
)

// Partner is a registered business in the coalition.
type Partner struct {
	ID     string
	Name   string
	Status PartnerStatus
}

// Page is a position in a transaction listing.
type Page struct {
	CreatedAt time.Time
	ID        string
}
