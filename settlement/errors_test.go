package settlement

import (
	"errors"
	"fmt"
	"regexp"
	"testing"
)

func TestReasonsUnique(t *testing.T) {
	format := regexp.MustCompile(`^[A-Z][A-Z_]*[A-Z]$`)
	seen := map[string]bool{}
	for _, r := range Reasons() {
		if seen[r] {
			t.Errorf("reason %q: got it twice, want each reason once", r)
		}
		seen[r] = true
		if !format.MatchString(r) {
			t.Errorf("reason %q: want UPPER_SNAKE_CASE", r)
		}
	}
	if got, want := len(seen), len(allErrors); got != want {
		t.Errorf("distinct reasons: got %d, want %d", got, want)
	}
}

func TestReplayErrorRoundTrip(t *testing.T) {
	for _, sentinel := range allErrors {
		t.Run(sentinel.Reason, func(t *testing.T) {
			original := fmt.Errorf("%w: member m-1", sentinel)
			de, ok := AsError(original)
			if !ok {
				t.Fatalf("AsError(%v): got false, want the sentinel", original)
			}
			err := ReplayError(de.Reason, original.Error())
			if !errors.Is(err, sentinel) {
				t.Errorf("errors.Is(ReplayError(%q), sentinel): got false, want true", de.Reason)
			}
			if got, want := err.Error(), original.Error(); got != want {
				t.Errorf("message: got %q, want %q", got, want)
			}
			if got, want := IsRecorded(err), sentinel.Recorded; got != want {
				t.Errorf("IsRecorded: got %v, want %v", got, want)
			}
			var re *ReplayedError
			if !errors.As(err, &re) {
				t.Fatalf("errors.As(*ReplayedError): got false, want true (%T)", err)
			}
			if re.Err != sentinel {
				t.Errorf("ReplayedError.Err: got %v, want %v", re.Err, sentinel)
			}
		})
	}
}

func TestReplayErrorUnknownReason(t *testing.T) {
	err := ReplayError("NO_SUCH_REASON", "whatever")
	if err == nil {
		t.Fatal("ReplayError(unknown): got nil, want an error")
	}
	if de, ok := AsError(err); ok {
		t.Errorf("ReplayError(unknown): got domain error %q, want a system error", de.Reason)
	}
}

func TestRecordedSplit(t *testing.T) {
	recorded := map[string]bool{
		"INSUFFICIENT_POINTS": true, "HOLD_NOT_OPEN": true, "CAPTURE_EXCEEDS_HOLD": true,
		"REVERSAL_EXCEEDS_ORIGINAL": true, "TRANSACTION_NOT_REVERSIBLE": true, "MEMBER_BLOCKED": true,
		"MEMBER_NOT_FOUND": true, "TRANSACTION_NOT_FOUND": true, "HOLD_NOT_FOUND": true,
		"PARTNER_LIMIT_EXCEEDED": true, "MEMBER_LIMIT_EXCEEDED": true, // a refused award stays refused on retry
	}
	for _, e := range allErrors {
		if got, want := e.Recorded, recorded[e.Reason]; got != want {
			t.Errorf("%s.Recorded: got %v, want %v", e.Reason, got, want)
		}
	}
	if IsRecorded(errors.New("plain")) {
		t.Error("IsRecorded(plain error): got true, want false")
	}
	if IsRecorded(&ValidationError{}) {
		t.Error("IsRecorded(*ValidationError): got true, want false")
	}
}
