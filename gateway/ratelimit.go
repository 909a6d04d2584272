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
	PartnerRate
	// Partners overrides PartnerRate for single partners, by id; they are limited even when
	// PartnerRate is zero.
	Partners map[string]PartnerRate
}

// PartnerRate is one partner's bucket.
type PartnerRate struct {
	// PerSecond is the calls a second the partner may make; 0 (the default) means no limit.
	PerSecond int
	// Burst is the calls it may make at once after being idle; 0 means PerSecond.
	Burst int
}

func (r PartnerRate) validate(what string) error {
	if r.PerSecond < 0 || r.Burst < 0 {
		return fmt.Errorf("gateway: %s rate limit %d/s, burst %d: want 0 or more (0: no limit, burst 0: the rate)", what, r.PerSecond, r.Burst)
	}
	if r.PerSecond == 0 && r.Burst > 0 {
		return fmt.Errorf("gateway: %s rate burst %d without a rate: set the rate too", what, r.Burst)
	}
	return nil
}

// burst is Burst, or PerSecond when Burst is 0.
func (r PartnerRate) burst() int {
	if r.Burst == 0 {
		return r.PerSecond
	}
	return r.Burst
}

func (r PartnerRate) bucket() *rate.Limiter {
	return rate.NewLimiter(rate.Limit(r.PerSecond), r.burst())
}

// Validate reports a negative rate or burst, a burst without a rate, or an override that
// names no partner or sets no rate.
func (r RateLimit) Validate() error {
	if err := r.PartnerRate.validate("partner"); err != nil {
		return err
	}
	for id, pr := range r.Partners {
		if id == "" {
			return fmt.Errorf("gateway: a partner rate limit without a partner id")
		}
		if pr.PerSecond == 0 {
			return fmt.Errorf("gateway: partner %s: rate limit 0: want 1 or more calls a second", id)
		}
		if err := pr.validate("partner " + id); err != nil {
			return err
		}
	}
	return nil
}

// of returns the rate of partner id and whether it is limited at all.
func (r RateLimit) of(id string) (PartnerRate, bool) {
	if pr, ok := r.Partners[id]; ok {
		return pr, true
	}
	return r.PartnerRate, r.PerSecond > 0
}

// partnerLimiter holds the partners' buckets; nil when there is no limit.
type partnerLimiter struct {
	cfg RateLimit
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newPartnerLimiter(cfg RateLimit, now func() time.Time) *partnerLimiter {
	if cfg.PerSecond == 0 && len(cfg.Partners) == 0 {
		return nil
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
		pr, limited := l.cfg.of(partner)
		if !limited {
			l.mu.Unlock()
			return 0, true
		}
		if len(l.buckets) >= maxCachedPartners {
			clear(l.buckets)
		}
		b = pr.bucket()
		l.buckets[partner] = b
	}
	l.mu.Unlock()
	now := l.now()
	if b.AllowN(now, 1) {
		return 0, true
	}
	// Refused: AllowN took nothing (a reservation cancelled under concurrent calls may not give
	// its token back), so a partner retrying too early does not push its next admission out.
	wait := time.Duration((1 - b.TokensAt(now)) / float64(b.Limit()) * float64(time.Second))
	return max(wait, time.Millisecond), false
}

// refusal is the status of a call over the limit: RESOURCE_EXHAUSTED with the limit in the
// ErrorInfo and, in RetryInfo, when the bucket admits a call again (rounded up to 1 ms).
func (l *partnerLimiter) refusal(partner string, wait time.Duration) *status.Status {
	wait = wait.Round(time.Millisecond) + time.Millisecond
	pr, _ := l.cfg.of(partner)
	st := withInfo(codes.ResourceExhausted,
		fmt.Sprintf("partner %s is over its rate limit of %d calls/s (burst %d) on this gateway: retry in %s", partner, pr.PerSecond, pr.burst(), wait),
		ReasonRateLimited, map[string]string{
			"partner":          partner,
			"limit_per_second": strconv.Itoa(pr.PerSecond),
			"burst":            strconv.Itoa(pr.burst()),
		})
	if with, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		st = with
	}
	return st
}
