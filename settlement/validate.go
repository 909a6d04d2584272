package settlement

import (
	"regexp"
	"time"
	"unicode/utf8"
)

var (
	idempotencyKeyRE = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,128}$`)
	memberIDRE       = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)
	uuidRE           = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// Validate checks cmd's fields for its Op at time now and returns a *ValidationError listing
// every problem, or nil.
func Validate(cmd Command, now time.Time) error {
	var v ValidationError
	if !idempotencyKeyRE.MatchString(cmd.IdempotencyKey) {
		v.add("idempotency_key", "must be 1-128 characters of [A-Za-z0-9._:-]")
	}
	switch cmd.Op {
	case OpAward:
		validateMemberPointsReference(&v, cmd, false)
		validateAwardExtras(&v, cmd, now)
	case OpRedeem:
		validateMemberPointsReference(&v, cmd, false)
	case OpAuthorize:
		validateMemberPointsReference(&v, cmd, false)
		if cmd.HoldTTL != 0 && (cmd.HoldTTL < MinHoldTTL || cmd.HoldTTL > MaxHoldTTL) {
			v.add("hold_ttl", "must be between %s and %s", MinHoldTTL, MaxHoldTTL)
		}
	case OpCapture:
		validateUUID(&v, "hold_id", cmd.HoldID)
		validateOptionalPoints(&v, cmd.Points)
	case OpVoid:
		validateUUID(&v, "hold_id", cmd.HoldID)
	case OpReverse:
		validateUUID(&v, "transaction_id", cmd.TransactionID)
		validateOptionalPoints(&v, cmd.Points)
		if n := utf8.RuneCountInString(cmd.Reason); n == 0 || n > MaxReasonLen || !utf8.ValidString(cmd.Reason) {
			v.add("reason", "must be 1-%d characters", MaxReasonLen)
		}
	default:
		v.add("op", "unknown operation %q", cmd.Op)
	}
	return v.orNil()
}

// ValidateIdempotencyKey checks a key outside a ledger command (a settlement run's, say) by the
// ledger's rule for keys.
func ValidateIdempotencyKey(key string) error {
	var v ValidationError
	if !idempotencyKeyRE.MatchString(key) {
		v.add("idempotency_key", "must be 1-%d characters of [A-Za-z0-9._:-]", MaxIdempotencyKeyLen)
	}
	return v.orNil()
}

// ValidateMemberID checks a member id used by a read.
func ValidateMemberID(memberID string) error {
	var v ValidationError
	if !memberIDRE.MatchString(memberID) {
		v.add("member_id", "must be 1-64 characters of [A-Za-z0-9._-]")
	}
	return v.orNil()
}

// ValidatePageSize checks a listing's page size (0 means the default).
func ValidatePageSize(size int) error {
	var v ValidationError
	if size < 0 || size > MaxPageSize {
		v.add("page_size", "must be between 0 and %d", MaxPageSize)
	}
	return v.orNil()
}

func validateMemberPointsReference(v *ValidationError, cmd Command, _ bool) {
	if !memberIDRE.MatchString(cmd.MemberID) {
		v.add("member_id", "must be 1-64 characters of [A-Za-z0-9._-]")
	}
	if cmd.Points < 1 || cmd.Points > MaxPointsPerCommand {
		v.add("points", "must be between 1 and %d", MaxPointsPerCommand)
	}
	if utf8.RuneCountInString(cmd.Reference) > MaxReferenceLen || !utf8.ValidString(cmd.Reference) {
		v.add("reference", "must be at most %d characters of valid UTF-8", MaxReferenceLen)
	}
}

func validateAwardExtras(v *ValidationError, cmd Command, now time.Time) {
	if !cmd.OccurredAt.IsZero() && cmd.OccurredAt.After(now.Add(MaxFutureSkew)) {
		v.add("occurred_at", "must not be more than %s in the future", MaxFutureSkew)
	}
	if len(cmd.Metadata) > MaxMetadataEntries {
		v.add("metadata", "must have at most %d entries", MaxMetadataEntries)
	}
	for k, val := range cmd.Metadata {
		if n := utf8.RuneCountInString(k); n == 0 || n > MaxMetadataKeyLen || !utf8.ValidString(k) {
			v.add("metadata", "keys must be 1-%d characters", MaxMetadataKeyLen)
			return
		}
		if utf8.RuneCountInString(val) > MaxMetadataValueLen || !utf8.ValidString(val) {
			v.add("metadata["+k+"]", "must be at most %d characters", MaxMetadataValueLen)
		}
	}
}

func validateOptionalPoints(v *ValidationError, points int64) {
	if points < 0 || points > MaxPointsPerCommand {
		v.add("points", "must be 0 (all) or between 1 and %d", MaxPointsPerCommand)
	}
}

func validateUUID(v *ValidationError, field, id string) {
	if !uuidRE.MatchString(id) {
		v.add(field, "must be a lowercase UUID")
	}
}
