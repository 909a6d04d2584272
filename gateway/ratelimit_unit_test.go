package gateway

import (
	"testing"
	"time"
)

func TestRateLimitConfig(t *testing.T) {
	for _, rl := range []RateLimit{{PerSecond: -1}, {PerSecond: 10, Burst: -1}, {Burst: 5}} {
		if err := rl.Validate(); err == nil {
			t.Errorf("RateLimit %+v accepted", rl)
		}
	}
	for _, rl := range []RateLimit{{}, {PerSecond: 10}, {PerSecond: 10, Burst: 50}} {
		if err := rl.Validate(); err != nil {
			t.Errorf("RateLimit %+v: %v", rl, err)
		}
	}
	if newPartnerLimiter(RateLimit{}, time.Now) != nil {
		t.Error("a zero RateLimit built a limiter")
	}
	if l := newPartnerLimiter(RateLimit{PerSecond: 7}, time.Now); l.cfg.Burst != 7 {
		t.Errorf("burst 0 became %d, want the rate (7)", l.cfg.Burst)
	}
}

// The buckets refill at the rate, per partner, and a refused call takes nothing from them.
func TestPartnerLimiterRefills(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	l := newPartnerLimiter(RateLimit{PerSecond: 10, Burst: 2}, func() time.Time { return now })
	admitted := func(p string) bool { _, ok := l.admit(p); return ok }
	if !admitted("a") || !admitted("a") {
		t.Fatal("the burst of 2 was not admitted")
	}
	wait, ok := l.admit("a")
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("3rd call: admitted %v, wait %s; want refused for 100ms", ok, wait)
	}
	for range 5 { // refusals must not borrow from the future
		l.admit("a")
	}
	if !admitted("b") {
		t.Error("partner b was refused because of a's calls")
	}
	now = now.Add(99 * time.Millisecond)
	if admitted("a") {
		t.Error("admitted before a token was back")
	}
	now = now.Add(time.Millisecond)
	if !admitted("a") {
		t.Error("refused 100ms later, with a token back: refused calls took tokens")
	}
	if admitted("a") {
		t.Error("a second call admitted on one token")
	}
	if st := l.refusal("a", 1500*time.Microsecond); st.Code().String() != "ResourceExhausted" || ReasonOf(st.Err()) != ReasonRateLimited {
		t.Errorf("refusal: %s %q", st.Code(), ReasonOf(st.Err()))
	}
}
