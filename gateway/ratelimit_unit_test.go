package gateway

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRateLimitConfig(t *testing.T) {
	for _, rl := range []RateLimit{
		{PartnerRate: PartnerRate{PerSecond: -1}},
		{PartnerRate: PartnerRate{PerSecond: 10, Burst: -1}},
		{PartnerRate: PartnerRate{Burst: 5}},
		{Partners: map[string]PartnerRate{"": {PerSecond: 5}}},
		{Partners: map[string]PartnerRate{"a": {}}},
		{Partners: map[string]PartnerRate{"a": {PerSecond: 5, Burst: -2}}},
	} {
		if err := rl.Validate(); err == nil {
			t.Errorf("RateLimit %+v accepted", rl)
		}
	}
	for _, rl := range []RateLimit{
		{},
		{PartnerRate: PartnerRate{PerSecond: 10}},
		{PartnerRate: PartnerRate{PerSecond: 10, Burst: 50}},
		{Partners: map[string]PartnerRate{"a": {PerSecond: 5}}},
	} {
		if err := rl.Validate(); err != nil {
			t.Errorf("RateLimit %+v: %v", rl, err)
		}
	}
	if newPartnerLimiter(RateLimit{}, time.Now) != nil {
		t.Error("a zero RateLimit built a limiter")
	}
}

// Overrides replace the default for their partner; without a default, only they are limited;
// a burst of 0 is the rate.
func TestPartnerLimiterOverrides(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	l := newPartnerLimiter(RateLimit{Partners: map[string]PartnerRate{"small": {PerSecond: 2}, "big": {PerSecond: 100, Burst: 5}}},
		func() time.Time { return now })
	count := func(p string) (n int) {
		for range 50 {
			if _, ok := l.admit(p); ok {
				n++
			}
		}
		return n
	}
	if n := count("small"); n != 2 {
		t.Errorf("small admitted %d of 50 at once, want its burst (= rate) 2", n)
	}
	if n := count("big"); n != 5 {
		t.Errorf("big admitted %d of 50 at once, want its burst 5", n)
	}
	if n := count("other"); n != 50 {
		t.Errorf("a partner without an override admitted %d of 50, want all: there is no default", n)
	}
	info := func(p string) map[string]string {
		for _, d := range l.refusal(p, time.Second).Details() {
			if ei, ok := d.(interface{ GetMetadata() map[string]string }); ok {
				return ei.GetMetadata()
			}
		}
		return nil
	}
	if m := info("small"); m["limit_per_second"] != "2" || m["burst"] != "2" {
		t.Errorf("small's refusal metadata %v: want its own rate 2 and burst 2", m)
	}
	l = newPartnerLimiter(RateLimit{PartnerRate: PartnerRate{PerSecond: 3}, Partners: map[string]PartnerRate{"big": {PerSecond: 10}}},
		func() time.Time { return now })
	if a, b := count("other"), count("big"); a != 3 || b != 10 {
		t.Errorf("default 3/s, big 10/s: admitted %d and %d at once", a, b)
	}
}

// The buckets refill at the rate, per partner, and a refused call takes nothing from them.
func TestPartnerLimiterRefills(t *testing.T) {
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	l := newPartnerLimiter(RateLimit{PartnerRate: PartnerRate{PerSecond: 10, Burst: 2}}, func() time.Time { return now })
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

// Concurrent refusals take nothing either: after a storm of calls at one instant, exactly the
// burst was admitted, and one refill interval later exactly one more call is.
func TestPartnerLimiterConcurrentRefusals(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := newPartnerLimiter(RateLimit{PartnerRate: PartnerRate{PerSecond: 10, Burst: 2}}, clock)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if _, ok := l.admit("a"); ok {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := admitted.Load(); n != 2 {
		t.Fatalf("admitted %d of 1600 concurrent calls at one instant, want the burst 2", n)
	}
	mu.Lock()
	now = now.Add(100 * time.Millisecond)
	mu.Unlock()
	if _, ok := l.admit("a"); !ok {
		t.Error("refused 100ms after the storm: the refusals took tokens")
	}
	if _, ok := l.admit("a"); ok {
		t.Error("two calls admitted on one refilled token")
	}
}
