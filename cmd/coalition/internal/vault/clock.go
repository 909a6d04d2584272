package vault

import (
	"context"
	"math/rand/v2"
	"time"
)

// Clock is the time source of everything in this package that waits or
// compares against an expiry. The zero Config uses the system clock; tests
// inject a fake one (vaulttest.Clock) or run under testing/synctest.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives once d has elapsed.
	After(d time.Duration) <-chan time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// sleep waits d on clock, or returns ctx.Err() when ctx ends first.
func sleep(ctx context.Context, clock Clock, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-clock.After(d):
		return nil
	}
}

// backoff is a bounded exponential backoff with jitter: each wait is in
// [d/2, d], d doubling from min up to max. It is not safe for concurrent use.
type backoff struct {
	min, max time.Duration
	next     time.Duration
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max, next: min}
}

// wait returns the next delay and doubles the one after it.
func (b *backoff) wait() time.Duration {
	d := b.next
	b.next = min(2*b.next, b.max)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + rand.N(half+1)
}

// reset starts the sequence again from min, after a success.
func (b *backoff) reset() { b.next = b.min }
