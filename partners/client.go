package partners

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sony/gobreaker/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	partnerv1 "github.com/coalitionexchange/coalition/proto/coalition/partner/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// Operations, one breaker each per partner: their latencies differ.
const (
	OpCreditExchange = "credit_exchange"
	OpDeliverEvents  = "deliver_events"
)

// Errors of a call that was not sent, so the partner certainly did not apply it. Both wrap
// settlement.ErrPartnerUnavailable.
var (
	ErrBreakerOpen  = fmt.Errorf("%w: circuit breaker open", settlement.ErrPartnerUnavailable)
	ErrBulkheadFull = fmt.Errorf("%w: too many calls in flight", settlement.ErrPartnerUnavailable)
)

// NotSent reports whether err means the call never reached the partner.
func NotSent(err error) bool {
	return errors.Is(err, ErrBreakerOpen) || errors.Is(err, ErrBulkheadFull)
}

// callError carries the class of a failed attempt to the breaker's IsSuccessful/IsExcluded.
type callError struct {
	class Class
	err   error
}

func (e *callError) Error() string { return e.err.Error() }
func (e *callError) Unwrap() error { return e.err }

func classOf(err error) Class {
	if err == nil {
		return ClassSuccess
	}
	var ce *callError
	if errors.As(err, &ce) {
		return ce.class
	}
	return ClassFailure
}

// breaker is a two-step gobreaker: admission (Allow) and verdict (done) are separate, so an
// exchange can be admitted before any points are held.
type breaker = gobreaker.TwoStepCircuitBreaker[any]

// Client calls one partner. It is built by a Registry and safe for concurrent use.
type Client struct {
	partnerID string
	endpoint  settlement.PartnerEndpoint
	conn      *grpc.ClientConn
	stub      partnerv1.PartnerProgramServiceClient
	breakers  map[string]*breaker // by operation
	inFlight  chan struct{}       // the bulkhead: a slot per call in flight
	retry     RetrySettings
	observe   func(op string, class Class)
}

// Admission is a reserved right to call the partner once: a bulkhead slot and the breaker's
// permission (one of the bounded probes when it is half-open). Use it in one call or Release it.
type Admission struct {
	finish func(err error)
	used   bool
}

// errReleased is the verdict of an admission given back unused: excluded from the counts.
var errReleased = &callError{class: ClassExcluded, err: errors.New("admission released unused")}

// Release gives an unused admission back; it is a no-op after the admission was used.
func (a *Admission) Release() {
	if a != nil && !a.used {
		a.used = true
		a.finish(errReleased)
	}
}

// Admit reserves one call of op. Errors: ErrBulkheadFull, ErrBreakerOpen (open, or half-open
// with every probe taken).
func (c *Client) Admit(op string) (*Admission, error) {
	select {
	case c.inFlight <- struct{}{}:
	default:
		return nil, fmt.Errorf("%w: partner %s", ErrBulkheadFull, c.partnerID)
	}
	done, err := c.breakers[op].Allow()
	if err != nil {
		<-c.inFlight
		return nil, fmt.Errorf("%w: partner %s %s (%v)", ErrBreakerOpen, c.partnerID, op, err)
	}
	return &Admission{finish: func(err error) { done(err); <-c.inFlight }}, nil
}

// Credit is a partner's confirmation of CreditExchange.
type Credit struct {
	ID       string
	Replayed bool
}

// CreditExchange asks the partner to credit units to memberID under key. It retries failures
// that may not have been applied (the key makes a repeat safe) with backoff and jitter, within
// ctx's deadline. Errors: ErrBreakerOpen or ErrBulkheadFull (not sent), a gRPC status error
// (Classify tells a refusal from an unknown outcome), or ctx's error.
// adm, when not nil, is the admission of the first attempt.
func (c *Client) CreditExchange(ctx context.Context, adm *Admission, key, memberID string, units int64, reference string) (Credit, error) {
	req := &partnerv1.CreditExchangeRequest{IdempotencyKey: key, MemberId: memberID, Units: units, Reference: reference}
	resp, err := call(ctx, c, OpCreditExchange, adm, c.endpoint.ExchangeTimeout, true,
		func(ctx context.Context) (*partnerv1.CreditExchangeResponse, error) {
			return c.stub.CreditExchange(ctx, req)
		})
	if err != nil {
		return Credit{}, err
	}
	return Credit{ID: resp.GetCreditId(), Replayed: resp.GetReplayed()}, nil
}

// DeliveryResult is what the partner did with one event.
type DeliveryResult int

// Delivery results.
const (
	DeliveryApplied DeliveryResult = iota
	DeliveryDuplicate
	DeliveryRejected
)

// DeliverEvents hands events to the partner in order, once: the dispatcher is the retry layer.
// It returns one result per event. Errors as CreditExchange.
func (c *Client) DeliverEvents(ctx context.Context, events []settlement.OutboxEvent) ([]DeliveryResult, error) {
	req := &partnerv1.DeliverEventsRequest{}
	for _, e := range events {
		req.Events = append(req.Events, &partnerv1.Event{Id: e.ID, Type: e.Type, MemberId: e.MemberID, Points: e.Points,
			AtPartnerId: e.AtPartnerID, TransactionId: e.TransactionID, OccurredAt: timestamppb.New(e.CreatedAt), RunId: e.RunID})
	}
	resp, err := call(ctx, c, OpDeliverEvents, nil, c.endpoint.CallTimeout, false,
		func(ctx context.Context) (*partnerv1.DeliverEventsResponse, error) {
			return c.stub.DeliverEvents(ctx, req)
		})
	if err != nil {
		return nil, err
	}
	if len(resp.GetResults()) != len(events) {
		return nil, fmt.Errorf("partner %s answered %d results for %d events", c.partnerID, len(resp.GetResults()), len(events))
	}
	out := make([]DeliveryResult, len(events))
	for i, r := range resp.GetResults() {
		switch r {
		case partnerv1.EventResult_EVENT_RESULT_APPLIED:
			out[i] = DeliveryApplied
		case partnerv1.EventResult_EVENT_RESULT_DUPLICATE:
			out[i] = DeliveryDuplicate
		default:
			out[i] = DeliveryRejected
		}
	}
	return out, nil
}

// Endpoint returns the configuration the client was built from.
func (c *Client) Endpoint() settlement.PartnerEndpoint { return c.endpoint }

// State returns the breaker state of op.
func (c *Client) State(op string) gobreaker.State { return c.breakers[op].State() }

// InFlight returns how many calls to the partner are in flight.
func (c *Client) InFlight() int { return len(c.inFlight) }

// call runs one logical call: an admission (bulkhead slot and breaker permission) and a
// deadline per attempt, retries (idempotent calls only) within ctx's deadline. adm, when not
// nil, admits the first attempt.
func call[T any](ctx context.Context, c *Client, op string, adm *Admission, timeout time.Duration, idempotent bool,
	fn func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	for attempt := 1; ; attempt++ {
		if attempt > 1 || adm == nil {
			var err error
			if adm, err = c.Admit(op); err != nil {
				return zero, err
			}
		}
		adm.used = true
		actx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := fn(actx)
		cancel()
		if err != nil {
			err = &callError{class: Classify(err, ctx.Err()), err: err}
		}
		adm.finish(err)
		c.observe(op, classOf(err))
		if err == nil {
			return resp, nil
		}
		if !idempotent || attempt >= c.retry.MaxAttempts || !retryable(err) || ctx.Err() != nil {
			return zero, err
		}
		delay := c.retry.backoff(attempt)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < delay+timeout/4 {
			return zero, err // no time left for a useful attempt
		}
		if sleep(ctx, delay) != nil {
			return zero, err
		}
	}
}

// RetrySettings bound the retries of idempotent calls. Zero values mean defaults.
type RetrySettings struct {
	MaxAttempts int           // attempts in all, default 3
	BackoffBase time.Duration // first retry's maximum delay, default 50ms; doubles per retry
	BackoffMax  time.Duration // cap, default 1s
}

func (r RetrySettings) withDefaults() RetrySettings {
	if r.MaxAttempts <= 0 {
		r.MaxAttempts = 3
	}
	if r.BackoffBase <= 0 {
		r.BackoffBase = 50 * time.Millisecond
	}
	if r.BackoffMax <= 0 {
		r.BackoffMax = time.Second
	}
	return r
}

// backoff is "equal jitter": half the capped exponential delay plus a random half.
func (r RetrySettings) backoff(attempt int) time.Duration {
	return jitter(r.BackoffBase, r.BackoffMax, attempt)
}

func jitter(base, maxDelay time.Duration, attempt int) time.Duration {
	d := base << min(attempt-1, 20)
	if d > maxDelay || d <= 0 {
		d = maxDelay
	}
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
