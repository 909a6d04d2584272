package settlement

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a domain error with a stable reason (the google.rpc.ErrorInfo reason the gateway
// sends). The sentinels below are the only values; wrap them with %w to add detail.
type Error struct {
	Reason string
	msg    string
	// Recorded errors are business outcomes: stored under the idempotency key and returned
	// again on replay, exactly like a success.
	Recorded bool
}

func (e *Error) Error() string { return e.msg }

func newError(reason, msg string, recorded bool) *Error {
	return &Error{Reason: reason, msg: msg, Recorded: recorded}
}

// Business outcomes: recorded under the idempotency key.
var (
	ErrInsufficientPoints      = newError("INSUFFICIENT_POINTS", "insufficient points", true)
	ErrHoldNotOpen             = newError("HOLD_NOT_OPEN", "hold is not open", true)
	ErrCaptureExceedsHold      = newError("CAPTURE_EXCEEDS_HOLD", "capture exceeds the hold", true)
	ErrReversalExceedsOriginal = newError("REVERSAL_EXCEEDS_ORIGINAL", "reversal exceeds what is left of the original", true)
	ErrNotReversible           = newError("TRANSACTION_NOT_REVERSIBLE", "transaction kind cannot be reversed", true)
	ErrMemberBlocked           = newError("MEMBER_BLOCKED", "member is blocked", true)
	ErrMemberNotFound          = newError("MEMBER_NOT_FOUND", "member not found", true)
	ErrTransactionNotFound     = newError("TRANSACTION_NOT_FOUND", "transaction not found", true)
	ErrHoldNotFound            = newError("HOLD_NOT_FOUND", "hold not found", true)
	// ErrPartnerLimitExceeded: the award would cross one of the awarding partner's exposure
	// limits (outstanding value, points per transaction). Nothing changed.
	ErrPartnerLimitExceeded = newError("PARTNER_LIMIT_EXCEEDED", "the award would cross the partner's exposure limit", true)
	// ErrMemberLimitExceeded: the award would cross the partner's per-member daily limit.
	ErrMemberLimitExceeded = newError("MEMBER_LIMIT_EXCEEDED", "the award would cross the partner's per-member daily limit", true)
)

// Errors about the request or the system: never recorded, so a retry can succeed.
var (
	ErrIdempotencyKeyReused   = newError("IDEMPOTENCY_KEY_REUSED", "idempotency key was used with different request fields", false)
	ErrIdempotencyKeyInFlight = newError("IDEMPOTENCY_KEY_IN_FLIGHT", "a request with this idempotency key is still in flight", false)
	ErrPartnerUnknown         = newError("PARTNER_UNKNOWN", "partner is not registered", false)
	ErrPartnerSuspended       = newError("PARTNER_SUSPENDED", "partner is suspended", false)
	ErrAmbiguousCommit        = newError("AMBIGUOUS_COMMIT", "the outcome is unknown: retry with the same idempotency key", false)
	ErrTransactionConflict    = newError("TRANSACTION_CONFLICT", "too much contention: retry with the same idempotency key", false)
	ErrInvalidPageToken       = newError("INVALID_PAGE_TOKEN", "page token is malformed", false)
)

// Errors of settlement runs and the price book.
var (
	ErrCutoffTooRecent  = newError("CUTOFF_TOO_RECENT", "cutoff is not far enough in the past", false)
	ErrCutoffBeforeLast = newError("CUTOFF_BEFORE_LAST", "cutoff is before the latest closed period and is not one of its cutoffs", false)
	ErrRunInProgress    = newError("RUN_IN_PROGRESS", "another settlement run holds the lease", false)
	ErrRunNotFound      = newError("RUN_NOT_FOUND", "settlement run not found", false)
	ErrTermsRejected    = newError("PRICE_TERMS_REJECTED", "price terms rejected", false)
	ErrRecordsRejected  = newError("RECORDS_REJECTED", "partner records rejected", false)
)

// Errors of campaigns (campaign.go).
var (
	ErrCampaignNotFound = newError("CAMPAIGN_NOT_FOUND", "campaign not found", false)
	ErrCampaignExists   = newError("CAMPAIGN_EXISTS", "a campaign with this id already exists", false)
	ErrCampaignRejected = newError("CAMPAIGN_REJECTED", "campaign rejected", false)
	ErrCampaignEnded    = newError("CAMPAIGN_ENDED", "campaign has ended; its status cannot change", false)
)

// allErrors lists every sentinel, so a stored reason can be turned back into its error.
var allErrors = []*Error{
	ErrInsufficientPoints, ErrHoldNotOpen, ErrCaptureExceedsHold, ErrReversalExceedsOriginal,
	ErrNotReversible, ErrMemberBlocked, ErrMemberNotFound, ErrTransactionNotFound, ErrHoldNotFound,
	ErrIdempotencyKeyReused, ErrIdempotencyKeyInFlight, ErrPartnerUnknown, ErrPartnerSuspended,
	ErrAmbiguousCommit, ErrTransactionConflict, ErrInvalidPageToken,
	ErrCutoffTooRecent, ErrCutoffBeforeLast, ErrRunInProgress, ErrRunNotFound, ErrTermsRejected, ErrRecordsRejected,
	ErrPartnerUnavailable, ErrPartnerNotConfigured, ErrExchangeNotFound,
	ErrCampaignNotFound, ErrCampaignExists, ErrCampaignRejected, ErrCampaignEnded,
	ErrPartnerLimitExceeded, ErrMemberLimitExceeded,
}

// Reasons returns every domain error reason, for the gateway's mapping table and its test.
func Reasons() []string {
	out := make([]string, 0, len(allErrors))
	for _, e := range allErrors {
		out = append(out, e.Reason)
	}
	return out
}

// AsError finds the domain error in err's chain.
func AsError(err error) (*Error, bool) {
	var de *Error
	if errors.As(err, &de) {
		return de, true
	}
	return nil, false
}

// IsRecorded reports whether err is a business outcome to store under the idempotency key.
func IsRecorded(err error) bool {
	de, ok := AsError(err)
	return ok && de.Recorded
}

// ReplayedError is a recorded business error read back from the idempotency record.
type ReplayedError struct {
	Err     *Error
	Message string
}

func (e *ReplayedError) Error() string { return e.Message }

// Unwrap returns the domain sentinel.
func (e *ReplayedError) Unwrap() error { return e.Err }

// ReplayError rebuilds a recorded error from its stored reason and message.
func ReplayError(reason, message string) error {
	for _, e := range allErrors {
		if e.Reason == reason {
			return &ReplayedError{Err: e, Message: message}
		}
	}
	return fmt.Errorf("idempotency record holds unknown reason %q", reason)
}

// FieldViolation names one bad request field.
type FieldViolation struct {
	Field       string
	Description string
}

// ValidationError lists every bad field of a request. It changes nothing and is never recorded.
type ValidationError struct {
	Violations []FieldViolation
}

func (e *ValidationError) Error() string {
	parts := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		parts = append(parts, v.Field+": "+v.Description)
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

func (e *ValidationError) add(field, format string, args ...any) {
	e.Violations = append(e.Violations, FieldViolation{Field: field, Description: fmt.Sprintf(format, args...)})
}

func (e *ValidationError) orNil() error {
	if len(e.Violations) == 0 {
		return nil
	}
	return e
}
