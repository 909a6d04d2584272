package settlement

import "time"

// SettleConfig says how a run is made.
type SettleConfig struct {
	Cutoff    time.Time
	Now       time.Time
	SafetyLag time.Duration // the cutoff must be at least this far in the past
	Holder    string        // lease holder name (replica id)
	LeaseTTL  time.Duration // default 10 minutes
	Progress  func(step string)
	// IdempotencyKey, when set, makes the run once: a run stored with the key is returned
	// (Replayed) instead of running again; the key with another cutoff is ErrIdempotencyKeyReused.
	IdempotencyKey string
}

// RunRecord is a stored settlement run.
type RunRecord struct {
	ID             int64
	Period         int64
	PreviousCutoff time.Time
	Cutoff         time.Time
	Model          Model
	Status         string // published or failed
	Currency       string
	Checks         []Check
	Result         Result
	Transactions   int64
	Late           int64
	CreatedAt      time.Time
	// Replayed: Settle returned the run an earlier call with the same idempotency key made.
	Replayed bool
}

// PartnerRecord is one line of a partner's own books, for reconciliation.
type PartnerRecord struct {
	Line       int64
	Reference  string
	Kind       string
	MemberID   string
	Points     int64
	OccurredAt time.Time
}

// ReconItem is one reconciliation outcome.
type ReconItem struct {
	Outcome       string // matched, missing_here, missing_at_partner, points_mismatch
	Reference     string
	Kind          string
	MemberID      string
	LedgerPoints  int64
	PartnerPoints int64
}
