package settlement

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

const testUUID = "0b1c2d3e-4f50-4a6b-8c7d-8e9fa0b1c2d3"

// validCommand returns a valid command of op; each table row breaks one field of it.
func validCommand(op Op) Command {
	cmd := Command{Op: op, PartnerID: "acme-air", IdempotencyKey: "key-1"}
	switch op {
	case OpAward, OpRedeem, OpAuthorize:
		cmd.MemberID, cmd.Points, cmd.Reference = "member-1", 100, "order-1"
	case OpCapture, OpVoid:
		cmd.HoldID = testUUID
	case OpReverse:
		cmd.TransactionID, cmd.Reason = testUUID, "returned"
	}
	return cmd
}

func with(op Op, edit func(*Command)) Command {
	cmd := validCommand(op)
	edit(&cmd)
	return cmd
}

// violatedFields returns the sorted field names of err's violations (nil when err is nil).
func violatedFields(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got error %T %v, want *ValidationError", err, err)
	}
	fields := make([]string, 0, len(ve.Violations))
	for _, v := range ve.Violations {
		fields = append(fields, v.Field)
	}
	slices.Sort(fields)
	return fields
}

func TestValidate(t *testing.T) {
	bigMetadata := map[string]string{}
	for i := range MaxMetadataEntries + 1 {
		bigMetadata[strings.Repeat("k", i+1)] = "v"
	}
	fullMetadata := map[string]string{}
	for i := range MaxMetadataEntries {
		fullMetadata[strings.Repeat("k", i+1)] = strings.Repeat("v", MaxMetadataValueLen)
	}
	tests := []struct {
		name string
		cmd  Command
		want []string // violated fields, sorted; nil = valid
	}{
		{"award valid", validCommand(OpAward), nil},
		{"redeem valid", validCommand(OpRedeem), nil},
		{"authorize valid", validCommand(OpAuthorize), nil},
		{"capture valid", validCommand(OpCapture), nil},
		{"void valid", validCommand(OpVoid), nil},
		{"reverse valid", validCommand(OpReverse), nil},
		{"unknown op", with("transfer", func(c *Command) {}), []string{"op"}},
		{"empty op", with("", func(c *Command) {}), []string{"op"}},

		{"key empty", with(OpAward, func(c *Command) { c.IdempotencyKey = "" }), []string{"idempotency_key"}},
		{"key 1 char", with(OpAward, func(c *Command) { c.IdempotencyKey = "k" }), nil},
		{"key 128 chars", with(OpAward, func(c *Command) { c.IdempotencyKey = strings.Repeat("k", 128) }), nil},
		{"key 129 chars", with(OpAward, func(c *Command) { c.IdempotencyKey = strings.Repeat("k", 129) }), []string{"idempotency_key"}},
		{"key punctuation allowed", with(OpRedeem, func(c *Command) { c.IdempotencyKey = "a.b_c:d-E9" }), nil},
		{"key space", with(OpRedeem, func(c *Command) { c.IdempotencyKey = "a b" }), []string{"idempotency_key"}},
		{"key slash", with(OpVoid, func(c *Command) { c.IdempotencyKey = "a/b" }), []string{"idempotency_key"}},
		{"key newline", with(OpVoid, func(c *Command) { c.IdempotencyKey = "ab\n" }), []string{"idempotency_key"}},

		{"member empty", with(OpAward, func(c *Command) { c.MemberID = "" }), []string{"member_id"}},
		{"member 64 chars", with(OpRedeem, func(c *Command) { c.MemberID = strings.Repeat("m", 64) }), nil},
		{"member 65 chars", with(OpRedeem, func(c *Command) { c.MemberID = strings.Repeat("m", 65) }), []string{"member_id"}},
		{"member colon", with(OpAuthorize, func(c *Command) { c.MemberID = "m:1" }), []string{"member_id"}},
		{"member non-ascii", with(OpAuthorize, func(c *Command) { c.MemberID = "mé" }), []string{"member_id"}},

		{"points 0", with(OpAward, func(c *Command) { c.Points = 0 }), []string{"points"}},
		{"points -1", with(OpRedeem, func(c *Command) { c.Points = -1 }), []string{"points"}},
		{"points 1", with(OpRedeem, func(c *Command) { c.Points = 1 }), nil},
		{"points max", with(OpAuthorize, func(c *Command) { c.Points = MaxPointsPerCommand }), nil},
		{"points max+1", with(OpAuthorize, func(c *Command) { c.Points = MaxPointsPerCommand + 1 }), []string{"points"}},

		{"reference empty", with(OpAward, func(c *Command) { c.Reference = "" }), nil},
		{"reference max runes", with(OpAward, func(c *Command) { c.Reference = strings.Repeat("é", MaxReferenceLen) }), nil},
		{"reference max+1", with(OpRedeem, func(c *Command) { c.Reference = strings.Repeat("r", MaxReferenceLen+1) }), []string{"reference"}},
		{"reference invalid utf-8", with(OpAuthorize, func(c *Command) { c.Reference = "\xff" }), []string{"reference"}},

		{"occurred_at past", with(OpAward, func(c *Command) { c.OccurredAt = testNow.Add(-24 * time.Hour) }), nil},
		{"occurred_at at skew", with(OpAward, func(c *Command) { c.OccurredAt = testNow.Add(MaxFutureSkew) }), nil},
		{"occurred_at beyond skew", with(OpAward, func(c *Command) { c.OccurredAt = testNow.Add(MaxFutureSkew + time.Nanosecond) }), []string{"occurred_at"}},
		{"metadata full", with(OpAward, func(c *Command) { c.Metadata = fullMetadata }), nil},
		{"metadata too many", with(OpAward, func(c *Command) { c.Metadata = bigMetadata }), []string{"metadata"}},
		{"metadata empty key", with(OpAward, func(c *Command) { c.Metadata = map[string]string{"": "v"} }), []string{"metadata"}},
		{"metadata key max+1", with(OpAward, func(c *Command) {
			c.Metadata = map[string]string{strings.Repeat("k", MaxMetadataKeyLen+1): "v"}
		}), []string{"metadata"}},
		{"metadata value max+1", with(OpAward, func(c *Command) {
			c.Metadata = map[string]string{"k": strings.Repeat("v", MaxMetadataValueLen+1)}
		}), []string{"metadata[k]"}},
		{"metadata value invalid utf-8", with(OpAward, func(c *Command) { c.Metadata = map[string]string{"k": "\xff"} }), []string{"metadata[k]"}},

		{"hold_ttl default", with(OpAuthorize, func(c *Command) { c.HoldTTL = 0 }), nil},
		{"hold_ttl min", with(OpAuthorize, func(c *Command) { c.HoldTTL = MinHoldTTL }), nil},
		{"hold_ttl below min", with(OpAuthorize, func(c *Command) { c.HoldTTL = MinHoldTTL - 1 }), []string{"hold_ttl"}},
		{"hold_ttl negative", with(OpAuthorize, func(c *Command) { c.HoldTTL = -time.Minute }), []string{"hold_ttl"}},
		{"hold_ttl max", with(OpAuthorize, func(c *Command) { c.HoldTTL = MaxHoldTTL }), nil},
		{"hold_ttl above max", with(OpAuthorize, func(c *Command) { c.HoldTTL = MaxHoldTTL + 1 }), []string{"hold_ttl"}},

		{"capture hold_id empty", with(OpCapture, func(c *Command) { c.HoldID = "" }), []string{"hold_id"}},
		{"capture hold_id uppercase", with(OpCapture, func(c *Command) { c.HoldID = strings.ToUpper(testUUID) }), []string{"hold_id"}},
		{"capture hold_id no dashes", with(OpCapture, func(c *Command) { c.HoldID = strings.ReplaceAll(testUUID, "-", "") }), []string{"hold_id"}},
		{"capture points 0 = all", with(OpCapture, func(c *Command) { c.Points = 0 }), nil},
		{"capture points max", with(OpCapture, func(c *Command) { c.Points = MaxPointsPerCommand }), nil},
		{"capture points -1", with(OpCapture, func(c *Command) { c.Points = -1 }), []string{"points"}},
		{"capture points max+1", with(OpCapture, func(c *Command) { c.Points = MaxPointsPerCommand + 1 }), []string{"points"}},
		{"void hold_id bad", with(OpVoid, func(c *Command) { c.HoldID = "not-a-uuid" }), []string{"hold_id"}},

		{"reverse transaction_id bad", with(OpReverse, func(c *Command) { c.TransactionID = testUUID + "0" }), []string{"transaction_id"}},
		{"reverse points -1", with(OpReverse, func(c *Command) { c.Points = -1 }), []string{"points"}},
		{"reverse points max+1", with(OpReverse, func(c *Command) { c.Points = MaxPointsPerCommand + 1 }), []string{"points"}},
		{"reverse reason empty", with(OpReverse, func(c *Command) { c.Reason = "" }), []string{"reason"}},
		{"reverse reason max runes", with(OpReverse, func(c *Command) { c.Reason = strings.Repeat("é", MaxReasonLen) }), nil},
		{"reverse reason max+1", with(OpReverse, func(c *Command) { c.Reason = strings.Repeat("r", MaxReasonLen+1) }), []string{"reason"}},
		{"reverse reason invalid utf-8", with(OpReverse, func(c *Command) { c.Reason = "\xfe" }), []string{"reason"}},

		{"every problem listed", Command{Op: OpRedeem, IdempotencyKey: "", MemberID: "", Points: 0, Reference: "\xff"},
			[]string{"idempotency_key", "member_id", "points", "reference"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := violatedFields(t, Validate(tt.cmd, testNow))
			if !slices.Equal(got, tt.want) {
				t.Errorf("Validate violations: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestValidateMemberIDAndPageSize(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want []string
	}{
		{"member ok", ValidateMemberID("m-1"), nil},
		{"member empty", ValidateMemberID(""), []string{"member_id"}},
		{"member too long", ValidateMemberID(strings.Repeat("m", 65)), []string{"member_id"}},
		{"page 0 = default", ValidatePageSize(0), nil},
		{"page max", ValidatePageSize(MaxPageSize), nil},
		{"page max+1", ValidatePageSize(MaxPageSize + 1), []string{"page_size"}},
		{"page -1", ValidatePageSize(-1), []string{"page_size"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := violatedFields(t, tt.err); !slices.Equal(got, tt.want) {
				t.Errorf("violations: got %q, want %q", got, tt.want)
			}
		})
	}
}
