package settlement

import (
	"crypto/sha256"
	"encoding/json"
	"time"
)

// fingerprintFields are the semantic fields of a command, in a fixed order. Defaults are not
// applied first: a request that omits hold_ttl and one that sends the default are different
// requests to the client, so they fingerprint differently.
type fingerprintFields struct {
	Op            Op                `json:"op"`
	MemberID      string            `json:"member_id"`
	Points        int64             `json:"points"`
	Reference     string            `json:"reference"`
	OccurredAt    string            `json:"occurred_at"`
	Metadata      map[string]string `json:"metadata"`
	HoldTTLNanos  int64             `json:"hold_ttl_ns"`
	HoldID        string            `json:"hold_id"`
	TransactionID string            `json:"transaction_id"`
	Reason        string            `json:"reason"`
}

// Fingerprint is the canonical SHA-256 of cmd's semantic fields (everything but the partner
// and the key, which scope the record). encoding/json sorts map keys, so it is canonical.
func Fingerprint(cmd Command) []byte {
	f := fingerprintFields{
		Op:            cmd.Op,
		MemberID:      cmd.MemberID,
		Points:        cmd.Points,
		Reference:     cmd.Reference,
		Metadata:      cmd.Metadata,
		HoldTTLNanos:  int64(cmd.HoldTTL),
		HoldID:        cmd.HoldID,
		TransactionID: cmd.TransactionID,
		Reason:        cmd.Reason,
	}
	if !cmd.OccurredAt.IsZero() {
		f.OccurredAt = cmd.OccurredAt.UTC().Format(time.RFC3339Nano)
	}
	if len(f.Metadata) == 0 {
		f.Metadata = nil
	}
	b, err := json.Marshal(f)
	if err != nil {
		// Only strings and integers: marshalling cannot fail.
		panic("settlement: fingerprint: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return sum[:]
}
