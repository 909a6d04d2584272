package gateway

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ReasonRateLimited is the ErrorInfo reason of a call refused by the partner rate limit.
const ReasonRateLimited = "RATE_LIMITED"

// RateLimit bounds each partner's calls on one gateway replica: a token bucket per partner,
// refilled at PerSecond calls a second and holding at most Burst. A call over it is refused with
// RESOURCE_EXHAUSTED (reason RATE_LIMITED, and a RetryInfo saying when a call would be admitted)
// before it reaches the ledger, so it changes nothing; one partner's burst then cannot take the
// gateway's capacity from the others. Health checks are not limited.
type RateLimit struct {
	// PerSecond is the calls a second each partner may make; 0 (the default) turns the limit off.
	PerSecond int
	// Burst is the calls a partner may make at once after being idle; 0 means PerSecond.
	Burst int
}

// Validate reports a negative rate or burst, or a burst without a rate.
func (r RateLimit) Validate() error {
	if r.PerSecond < 0 || r.Burst < 0 {
		return fmt.Errorf("gateway: partner rate limit %d/s, burst %d: want 0 or more (0: no limit, burst 0: the rate)", r.PerSecond, r.Burst)
	}
	if r.PerSecond == 0 && r.Burst > 0 {
		return fmt.Errorf("gateway: partner rate burst %d without a rate: set the rate too", r.Burst)
	}
	return nil
}

// partnerLimiter holds the partners' buckets; nil when there is no limit.
type partnerLimiter struct {
	cfg RateLimit
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newPartnerLimiter(cfg RateLimit, now func() time.Time) *partnerLimiter {
	if cfg.PerSecond == 0 {
		return nil
	}
	if cfg.Burst == 0 {
		cfg.Burst = cfg.PerSecond
	}
	return &partnerLimiter{cfg: cfg, now: now, buckets: map[string]*rate.Limiter{}}
}

// admit takes one call from partner's bucket, or returns how long until the bucket would admit
// one. Only registered, active partners get here (authorize), so the map is bounded by the
// registry; maxCachedPartners bounds it anyway.
func (l *partnerLimiter) admit(partner string) (time.Duration, bool) {
	l.mu.Lock()
	b, ok := l.buckets[partner]
	if !ok {
		if len(l.buckets) >= maxCachedPartners {
			clear(l.buckets)
		}
		b = rate.NewLimiter(rate.Limit(l.cfg.PerSecond), l.cfg.Burst)
		l.buckets[partner] = b
	}
	l.mu.Unlock()
	now := l.now()
	r := b.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // give the token back: a refused call costs nothing
		return d, false
	}
	return 0, true
}

// refusal is the status of a call over the limit: RESOURCE_EXHAUSTED with the limit in the
// ErrorInfo and, in RetryInfo, when the bucket admits a call again (rounded up to 1 ms).
func (l *partnerLimiter) refusal(partner string, wait time.Duration) *status.Status {
	wait = wait.Round(time.Millisecond) + time.Millisecond
	st := withInfo(codes.ResourceExhausted,
		fmt.Sprintf("partner %s is over its rate limit of %d calls/s (burst %d) on this gateway: retry in %s", partner, l.cfg.PerSecond, l.cfg.Burst, wait),
		ReasonRateLimited, map[string]string{
			"partner":          partner,
			"limit_per_second": strconv.Itoa(l.cfg.PerSecond),
			"burst":            strconv.Itoa(l.cfg.Burst),
		})
	if with, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		st = with
	}
	return st
}
