package settlement

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

// FuzzValidate: Validate never panics, and whatever it accepts is within every bound; what it
// refuses is a *ValidationError naming at least one field.
func FuzzValidate(f *testing.F) {
	f.Add("award", "key-1", "M-1001", int64(500), "receipt", int64(0), "", "")
	f.Add("redeem", "", "M 1", int64(0), "", int64(0), "", "")
	f.Add("authorize", "k:1", "m.1", int64(10), "r", int64(time.Hour), "", "")
	f.Add("capture", "k", "", int64(-1), "", int64(0), "0c8e8f0e-3a2b-4c5d-8e9f-0a1b2c3d4e5f", "")
	f.Add("reverse", "k", "", int64(1), "", int64(0), "", "NOT-A-UUID")
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, op, key, member string, points int64, ref string, ttl int64, holdID, txnID string) {
		cmd := Command{Op: Op(op), IdempotencyKey: key, MemberID: member, Points: points, Reference: ref,
			HoldTTL: time.Duration(ttl), HoldID: holdID, TransactionID: txnID, Reason: ref}
		err := Validate(cmd, now)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Violations) == 0 {
				t.Fatalf("Validate(%+v) = %v, want a *ValidationError with violations", cmd, err)
			}
			return
		}
		if len(key) == 0 || len(key) > 128 {
			t.Fatalf("accepted idempotency key of %d bytes", len(key))
		}
		switch cmd.Op {
		case OpAward, OpRedeem, OpAuthorize:
			if points < 1 || points > MaxPointsPerCommand || len(member) == 0 || len(member) > 64 {
				t.Fatalf("accepted points %d member %q", points, member)
			}
		case OpCapture, OpReverse:
			if points < 0 || points > MaxPointsPerCommand {
				t.Fatalf("accepted points %d", points)
			}
		}
	})
}

// FuzzFingerprint: equal commands fingerprint equally, and changing any semantic field
// changes the fingerprint.
func FuzzFingerprint(f *testing.F) {
	f.Add("award", "M-1", int64(5), "ref", "k", "v")
	f.Add("redeem", "", int64(0), "", "", "")
	f.Fuzz(func(t *testing.T, op, member string, points int64, ref, mk, mv string) {
		cmd := Command{Op: Op(op), MemberID: member, Points: points, Reference: ref, Metadata: map[string]string{mk: mv}}
		a, b := Fingerprint(cmd), Fingerprint(cmd)
		if !bytes.Equal(a, b) || len(a) != 32 {
			t.Fatalf("fingerprint unstable or wrong size: %x %x", a, b)
		}
		changed := cmd
		changed.Points = points + 1
		if bytes.Equal(a, Fingerprint(changed)) {
			t.Fatalf("points %d and %d fingerprint the same", points, points+1)
		}
		changed = cmd
		changed.Reference = ref + "x"
		if bytes.Equal(a, Fingerprint(changed)) {
			t.Fatalf("references %q and %q fingerprint the same", ref, ref+"x")
		}
	})
}
