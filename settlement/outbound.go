package settlement

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"time"
)

// Errors of calls to partner systems (exchange out, outbox).
var (
	// ErrPartnerUnavailable: the partner's breaker is open or its bulkhead is full; nothing was
	// held or sent. Retry later (the status carries RetryInfo).
	ErrPartnerUnavailable = newError("PARTNER_UNAVAILABLE", "the partner is unavailable: retry later", false)
	// ErrPartnerNotConfigured: the partner has no endpoint, so it cannot be called.
	ErrPartnerNotConfigured = newError("PARTNER_NOT_CONFIGURED", "the partner has no endpoint configured", false)
	// ErrExchangeNotFound: no exchange with that id is visible to the caller.
	ErrExchangeNotFound = newError("EXCHANGE_NOT_FOUND", "exchange not found", false)
)

// Event types a partner may subscribe to (DESIGN.md §6).
const (
	// EventPointsRedeemed goes to the issuers of the lots a redemption or capture consumed.
	EventPointsRedeemed = "points.redeemed"
	// EventPointsAwardedElsewhere goes to every subscribed partner except the awarding one.
	EventPointsAwardedElsewhere = "points.awarded_elsewhere"
	// EventStatementReady announces a published settlement statement.
	EventStatementReady = "settlement.statement_ready"
	// EventPointsExpiring goes to every subscribed partner once per lot, ahead of its expiry.
	EventPointsExpiring = "points.expiring"
	// EventExposureAlert goes to a subscribed partner whose outstanding value crossed 80% of
	// its limit.
	EventExposureAlert = "partner.exposure_alert"
)

// EventTypes lists the event types a partner can subscribe to.
func EventTypes() []string {
	return []string{EventPointsRedeemed, EventPointsAwardedElsewhere, EventStatementReady, EventPointsExpiring, EventExposureAlert}
}

// Defaults and limits of a partner endpoint.
const (
	DefaultCallTimeout = 2 * time.Second
	MaxCallTimeout     = time.Minute
	DefaultMaxInFlight = 16
	MaxMaxInFlight     = 1024
	MaxRatioTerm       = 1_000_000
)

// PartnerEndpoint is how the coalition calls one partner's PartnerProgramService.
type PartnerEndpoint struct {
	PartnerID       string
	Endpoint        string        // host:port
	ServerName      string        // "" = the endpoint's host
	CallTimeout     time.Duration // DeliverEvents deadline
	ExchangeTimeout time.Duration // CreditExchange deadline per attempt
	MaxInFlight     int           // bulkhead
	RatioUnits      int64         // partner units per RatioPoints points
	RatioPoints     int64
	Events          []string // subscribed event types
}

// WithDefaults fills zero fields with their defaults.
func (e PartnerEndpoint) WithDefaults() PartnerEndpoint {
	if e.CallTimeout == 0 {
		e.CallTimeout = DefaultCallTimeout
	}
	if e.ExchangeTimeout == 0 {
		e.ExchangeTimeout = DefaultCallTimeout
	}
	if e.MaxInFlight == 0 {
		e.MaxInFlight = DefaultMaxInFlight
	}
	if e.RatioUnits == 0 && e.RatioPoints == 0 {
		e.RatioUnits, e.RatioPoints = 1, 1
	}
	return e
}

var endpointRE = regexp.MustCompile(`^[A-Za-z0-9.:\[\]-]{1,255}:[0-9]{1,5}$`)

// ValidatePartnerEndpoint checks an endpoint after WithDefaults.
func ValidatePartnerEndpoint(e PartnerEndpoint) error {
	var v ValidationError
	if !partnerIDRE.MatchString(e.PartnerID) {
		v.add("endpoint.partner_id", "must match %s", partnerIDRE)
	}
	if !endpointRE.MatchString(e.Endpoint) {
		v.add("endpoint.endpoint", "must be host:port")
	}
	for _, t := range []struct {
		field string
		d     time.Duration
	}{{"endpoint.call_timeout_ms", e.CallTimeout}, {"endpoint.exchange_timeout_ms", e.ExchangeTimeout}} {
		if t.d < time.Millisecond || t.d > MaxCallTimeout {
			v.add(t.field, "must be between 1ms and %s", MaxCallTimeout)
		}
	}
	if e.MaxInFlight < 1 || e.MaxInFlight > MaxMaxInFlight {
		v.add("endpoint.max_in_flight", "must be between 1 and %d", MaxMaxInFlight)
	}
	if e.RatioUnits < 1 || e.RatioUnits > MaxRatioTerm || e.RatioPoints < 1 || e.RatioPoints > MaxRatioTerm {
		v.add("endpoint.ratio_units", "ratio terms must be between 1 and %d", MaxRatioTerm)
	}
	known := map[string]bool{}
	for _, t := range EventTypes() {
		known[t] = true
	}
	for _, t := range e.Events {
		if !known[t] {
			v.add("endpoint.events", "unknown event type %q", t)
		}
	}
	return v.orNil()
}

// OutboxState is where an outbox event stands.
type OutboxState string

// Outbox states, as stored.
const (
	OutboxPending   OutboxState = "pending"
	OutboxDelivered OutboxState = "delivered"
	OutboxDead      OutboxState = "dead"
)

// OutboxEvent is one event for one partner, written in the transaction of its ledger change.
type OutboxEvent struct {
	ID            string
	PartnerID     string // the receiver
	Type          string
	MemberID      string
	Points        int64
	AtPartnerID   string // where it happened
	TransactionID string
	RunID         int64 // settlement.statement_ready: the run; 0 otherwise
	CreatedAt     time.Time
	State         OutboxState
	Attempts      int
	LastError     string
	NextAttemptAt time.Time
}

// ExchangeState is where an exchange into a partner program stands.
type ExchangeState string

// Exchange states, as stored.
const (
	ExchangePending   ExchangeState = "pending"
	ExchangeCompleted ExchangeState = "completed"
	ExchangeRejected  ExchangeState = "rejected"
	ExchangeFailed    ExchangeState = "failed"
)

// Exchange is one conversion of coalition points into a partner's units.
type Exchange struct {
	ID              string
	Caller          string // the caller's SPIFFE id
	IdempotencyKey  string
	MemberID        string
	ToPartner       string
	Points          int64
	Units           int64
	State           ExchangeState
	HoldID          string
	PartnerCreditID string
	Detail          string
	Attempts        int
	NextAttemptAt   time.Time
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// ExchangeID derives an exchange's id from its caller and idempotency key, so a retry of the
// request finds the same exchange.
func ExchangeID(caller, key string) string {
	sum := sha256.Sum256([]byte(caller + "\x00" + key))
	return "xo-" + hex.EncodeToString(sum[:12])
}

// ExchangeKey is the ledger or partner idempotency key of one step of an exchange: "hold",
// "capture", "void" (ledger, scoped to the receiving partner) or "credit" (the partner call).
func ExchangeKey(exchangeID, step string) string { return exchangeID + ":" + step }

// ValidateExchange checks an exchange request's fields.
func ValidateExchange(x Exchange) error {
	var v ValidationError
	if !idempotencyKeyRE.MatchString(x.IdempotencyKey) {
		v.add("idempotency_key", "must be 1-128 characters of [A-Za-z0-9._:-]")
	}
	if !memberIDRE.MatchString(x.MemberID) {
		v.add("member_id", "must be 1-64 characters of [A-Za-z0-9._-]")
	}
	if !partnerIDRE.MatchString(x.ToPartner) {
		v.add("to_partner", "must be a partner id")
	}
	if x.Points < 1 || x.Points > MaxPointsPerCommand {
		v.add("points", "must be between 1 and %d", MaxPointsPerCommand)
	}
	return v.orNil()
}

// ConvertPoints returns the partner units for points at the endpoint's ratio, or a
// *ValidationError when the ratio does not convert them exactly.
func ConvertPoints(points int64, e PartnerEndpoint) (int64, error) {
	scaled := points * e.RatioUnits // both bounded: at most 1e9 * 1e6 < 2^63
	if e.RatioPoints <= 0 || scaled%e.RatioPoints != 0 {
		return 0, &ValidationError{Violations: []FieldViolation{{Field: "points",
			Description: fmt.Sprintf("must be a multiple the ratio %d:%d converts exactly", e.RatioUnits, e.RatioPoints)}}}
	}
	return scaled / e.RatioPoints, nil
}
