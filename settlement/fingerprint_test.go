package settlement

import (
	"bytes"
	"encoding/hex"
	"testing"
	"time"
)

func fingerprintBase() Command {
	return Command{Op: OpAward, PartnerID: "acme-air", IdempotencyKey: "k-1", MemberID: "m-1", Points: 500,
		Reference: "order-42", OccurredAt: time.Date(2030, 1, 2, 3, 4, 5, 600, time.UTC),
		Metadata: map[string]string{"a": "1", "b": "2"}}
}

// TestFingerprintGolden pins the canonical form: stored idempotency records hold fingerprints,
// so a change to the encoding turns every retry of an existing key into IDEMPOTENCY_KEY_REUSED.
func TestFingerprintGolden(t *testing.T) {
	const want = "0a4f36560384522c9580413e9966c26f1d6cd499a6b372756871da2c3f93c582"
	if got := hex.EncodeToString(Fingerprint(fingerprintBase())); got != want {
		t.Errorf("Fingerprint: got %s, want %s", got, want)
	}
}

func TestFingerprintSame(t *testing.T) {
	base := fingerprintBase()
	tests := []struct {
		name string
		edit func(*Command)
	}{
		{"unchanged", func(c *Command) {}},
		{"metadata built in another order", func(c *Command) {
			m := map[string]string{}
			m["b"] = "2"
			m["a"] = "1"
			c.Metadata = m
		}},
		{"partner is not semantic (it scopes the key)", func(c *Command) { c.PartnerID = "bean-coffee" }},
		{"key is not semantic (it scopes the record)", func(c *Command) { c.IdempotencyKey = "k-2" }},
		{"occurred_at same instant in another zone", func(c *Command) {
			c.OccurredAt = c.OccurredAt.In(time.FixedZone("UTC+5", 5*3600))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := fingerprintBase()
			tt.edit(&cmd)
			if got, want := Fingerprint(cmd), Fingerprint(base); !bytes.Equal(got, want) {
				t.Errorf("Fingerprint: got %x, want %x (the same)", got, want)
			}
		})
	}
}

func TestFingerprintNilAndEmptyMetadataAreSame(t *testing.T) {
	a, b := fingerprintBase(), fingerprintBase()
	a.Metadata, b.Metadata = nil, map[string]string{}
	if got, want := Fingerprint(a), Fingerprint(b); !bytes.Equal(got, want) {
		t.Errorf("Fingerprint with empty metadata: got %x, want %x (as with nil)", got, want)
	}
}

func TestFingerprintDiffers(t *testing.T) {
	base := fingerprintBase()
	tests := []struct {
		name string
		edit func(*Command)
	}{
		{"op", func(c *Command) { c.Op = OpRedeem }},
		{"member", func(c *Command) { c.MemberID = "m-2" }},
		{"points", func(c *Command) { c.Points = 501 }},
		{"reference", func(c *Command) { c.Reference = "order-43" }},
		{"occurred_at", func(c *Command) { c.OccurredAt = c.OccurredAt.Add(time.Nanosecond) }},
		{"occurred_at omitted", func(c *Command) { c.OccurredAt = time.Time{} }},
		{"metadata value", func(c *Command) { c.Metadata = map[string]string{"a": "1", "b": "3"} }},
		{"metadata key", func(c *Command) { c.Metadata = map[string]string{"a": "1", "c": "2"} }},
		{"metadata entry added", func(c *Command) { c.Metadata = map[string]string{"a": "1", "b": "2", "c": ""} }},
		{"metadata omitted", func(c *Command) { c.Metadata = nil }},
		{"hold_ttl", func(c *Command) { c.HoldTTL = time.Minute }},
		{"hold_ttl sent as the default", func(c *Command) { c.HoldTTL = DefaultHoldTTL }},
		{"hold_id", func(c *Command) { c.HoldID = testUUID }},
		{"transaction_id", func(c *Command) { c.TransactionID = testUUID }},
		{"reason", func(c *Command) { c.Reason = "returned" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := fingerprintBase()
			tt.edit(&cmd)
			if got, base := Fingerprint(cmd), Fingerprint(base); bytes.Equal(got, base) {
				t.Errorf("Fingerprint after changing %s: got %x, want anything else", tt.name, got)
			}
		})
	}
}

func TestFingerprintStable(t *testing.T) {
	first := Fingerprint(fingerprintBase())
	for range 100 {
		if got := Fingerprint(fingerprintBase()); !bytes.Equal(got, first) {
			t.Fatalf("Fingerprint: got %x, want %x on every call", got, first)
		}
	}
	if got := len(first); got != 32 {
		t.Errorf("len(Fingerprint): got %d, want 32", got)
	}
}
