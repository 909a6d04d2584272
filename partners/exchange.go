package partners

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/coalitionexchange/coalition/settlement"
)

// ExchangeStore is what the Exchanger needs from the books (settlement/sqlstore implements it).
type ExchangeStore interface {
	// CreateExchange stores a pending exchange unless its id exists; it returns the stored one.
	CreateExchange(ctx context.Context, x settlement.Exchange) (settlement.Exchange, bool, error)
	// Exchange reads one, or settlement.ErrExchangeNotFound.
	Exchange(ctx context.Context, id string) (settlement.Exchange, error)
	// UpdateExchange writes progress while the exchange is pending and returns it as stored.
	UpdateExchange(ctx context.Context, x settlement.Exchange, now time.Time) (settlement.Exchange, error)
	// ClaimDueExchanges claims pending exchanges due at now for lease.
	ClaimDueExchanges(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]settlement.Exchange, error)
}

// Ledger applies commands exactly once per key (settlement.Ledger).
type Ledger interface {
	Apply(ctx context.Context, cmd settlement.Command) (settlement.Outcome, error)
}

// ExchangerConfig configures an Exchanger. Zero values mean defaults.
type ExchangerConfig struct {
	Ledger   Ledger        // required
	Store    ExchangeStore // required
	Partners *Registry     // required
	Logger   *slog.Logger  // default slog.Default()
	Now      func() time.Time
	// HoldTTL is the life of an exchange's hold; default settlement.MaxHoldTTL, so that a
	// PENDING exchange can still be captured when the partner's answer finally comes.
	HoldTTL time.Duration
	// CallBudget bounds the partner call inside ExchangeOut, retries included; default 5s.
	CallBudget time.Duration
	// ResolveInterval is how often the resolver looks for due PENDING exchanges; default 1s.
	ResolveInterval time.Duration
	// ResolveBackoffBase and ResolveBackoffMax space a PENDING exchange's attempts; 1s and 1m.
	ResolveBackoffBase time.Duration
	ResolveBackoffMax  time.Duration
}

// Exchanger converts coalition points into partner programs: hold, call, then capture or void.
type Exchanger struct {
	cfg ExchangerConfig
	log *slog.Logger
}

// NewExchanger returns an Exchanger.
func NewExchanger(cfg ExchangerConfig) (*Exchanger, error) {
	if cfg.Ledger == nil || cfg.Store == nil || cfg.Partners == nil {
		return nil, errors.New("partners: ExchangerConfig.Ledger, Store and Partners are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.HoldTTL = orDefault(cfg.HoldTTL, settlement.MaxHoldTTL)
	cfg.CallBudget = orDefault(cfg.CallBudget, 5*time.Second)
	cfg.ResolveInterval = orDefault(cfg.ResolveInterval, time.Second)
	cfg.ResolveBackoffBase = orDefault(cfg.ResolveBackoffBase, time.Second)
	cfg.ResolveBackoffMax = orDefault(cfg.ResolveBackoffMax, time.Minute)
	return &Exchanger{cfg: cfg, log: cfg.Logger}, nil
}

// ExchangeOut runs an exchange requested by caller (its SPIFFE id) and returns it as it
// stands, and whether it was stored before (a retry of the same key). Errors:
// *settlement.ValidationError, settlement.ErrIdempotencyKeyReused, ErrPartnerNotConfigured,
// ErrBreakerOpen or ErrBulkheadFull (both settlement.ErrPartnerUnavailable: nothing was held),
// or a system error. A PENDING result is not an error: the resolver finishes it. While the
// breaker is open even a retried key answers UNAVAILABLE (GetExchange reads the stored state).
func (x *Exchanger) ExchangeOut(ctx context.Context, caller string, req settlement.Exchange) (settlement.Exchange, bool, error) {
	if err := settlement.ValidateExchange(req); err != nil {
		return req, false, err
	}
	// Admission first, from memory: an open breaker or a full bulkhead answers before any
	// database read, and nothing is held.
	client, err := x.cfg.Partners.Client(ctx, req.ToPartner)
	if err != nil {
		return req, false, err
	}
	adm, err := client.Admit(OpCreditExchange)
	if err != nil {
		return req, false, err
	}
	defer adm.Release() // when the call below never happens
	if req.Units, err = settlement.ConvertPoints(req.Points, client.Endpoint()); err != nil {
		return req, false, err
	}
	req.ID, req.Caller = settlement.ExchangeID(caller, req.IdempotencyKey), caller
	if stored, err := x.cfg.Store.Exchange(ctx, req.ID); err == nil {
		return replayOf(stored, req)
	} else if !errors.Is(err, settlement.ErrExchangeNotFound) {
		return req, false, err
	}
	now := x.cfg.Now()
	req.State, req.CreatedAt = settlement.ExchangePending, now
	req.NextAttemptAt = now.Add(2 * x.cfg.CallBudget) // the resolver leaves it to us meanwhile
	stored, created, err := x.cfg.Store.CreateExchange(ctx, req)
	if err != nil {
		return req, false, err
	}
	if !created {
		return replayOf(stored, req)
	}
	out, err := x.advance(ctx, stored, adm)
	return out, false, err
}

// replayOf returns the stored exchange for a retried request, or ErrIdempotencyKeyReused.
func replayOf(stored, req settlement.Exchange) (settlement.Exchange, bool, error) {
	if stored.MemberID != req.MemberID || stored.ToPartner != req.ToPartner || stored.Points != req.Points {
		return req, false, settlement.ErrIdempotencyKeyReused
	}
	return stored, true, nil
}

// Get returns an exchange. Errors: settlement.ErrExchangeNotFound.
func (x *Exchanger) Get(ctx context.Context, id string) (settlement.Exchange, error) {
	return x.cfg.Store.Exchange(ctx, id)
}

// advance moves a pending exchange as far as it can now: hold (idempotent), call the partner
// with the key derived from the exchange, then capture, void, or schedule another attempt.
// Nothing here runs inside a database transaction.
// adm, when not nil, admits the first call.
func (x *Exchanger) advance(ctx context.Context, ex settlement.Exchange, adm *Admission) (settlement.Exchange, error) {
	hold, err := x.cfg.Ledger.Apply(ctx, settlement.Command{Op: settlement.OpAuthorize, PartnerID: ex.ToPartner,
		IdempotencyKey: settlement.ExchangeKey(ex.ID, "hold"), MemberID: ex.MemberID, Points: ex.Points,
		Reference: ex.ID, HoldTTL: x.cfg.HoldTTL})
	switch {
	case settlement.IsRecorded(err):
		ex.State, ex.Detail = settlement.ExchangeFailed, err.Error()
		return x.save(ctx, ex)
	case err != nil:
		return x.retryLater(ctx, ex, fmt.Errorf("hold: %w", err))
	}
	ex.HoldID = hold.Hold.ID
	client, err := x.cfg.Partners.Client(ctx, ex.ToPartner)
	if err != nil {
		return x.retryLater(ctx, ex, err)
	}
	callCtx, cancel := context.WithTimeout(ctx, x.cfg.CallBudget)
	defer cancel()
	ex.Attempts++
	credit, err := client.CreditExchange(callCtx, adm, settlement.ExchangeKey(ex.ID, "credit"), ex.MemberID, ex.Units, ex.ID)
	// The partner's answer is definite from here on: record it even if our caller leaves.
	ctx = context.WithoutCancel(ctx)
	switch {
	case err == nil:
		ex.PartnerCreditID = credit.ID
		return x.finish(ctx, ex, settlement.OpCapture, settlement.ExchangeCompleted, "")
	case !NotSent(err) && Classify(err, nil) == ClassRejected:
		return x.finish(ctx, ex, settlement.OpVoid, settlement.ExchangeRejected, "partner refused: "+err.Error())
	default:
		return x.retryLater(ctx, ex, err) // unknown outcome, or not sent: the same key again later
	}
}

// finish captures or voids the hold and records the definite state.
func (x *Exchanger) finish(ctx context.Context, ex settlement.Exchange, op settlement.Op, state settlement.ExchangeState, detail string) (settlement.Exchange, error) {
	_, err := x.cfg.Ledger.Apply(ctx, settlement.Command{Op: op, PartnerID: ex.ToPartner,
		IdempotencyKey: settlement.ExchangeKey(ex.ID, string(op)), HoldID: ex.HoldID})
	if err != nil && !settlement.IsRecorded(err) {
		return x.retryLater(ctx, ex, fmt.Errorf("%s: %w", op, err)) // the partner answers the same again
	}
	if err != nil {
		// The hold is no longer open (it outlived HoldTTL): the books and the partner disagree.
		x.log.Error("exchange: hold could not be settled; needs reconciliation", "exchange", ex.ID, "op", op, "err", err)
		ex.State, ex.Detail = settlement.ExchangeFailed, fmt.Sprintf("%s after partner answer failed: %v", op, err)
		return x.save(ctx, ex)
	}
	ex.State, ex.Detail = state, detail
	return x.save(ctx, ex)
}

func (x *Exchanger) retryLater(ctx context.Context, ex settlement.Exchange, cause error) (settlement.Exchange, error) {
	ex.Detail = "outcome unknown, will retry: " + cause.Error()
	ex.NextAttemptAt = x.cfg.Now().Add(jitter(x.cfg.ResolveBackoffBase, x.cfg.ResolveBackoffMax, max(ex.Attempts, 1)))
	return x.save(context.WithoutCancel(ctx), ex)
}

func (x *Exchanger) save(ctx context.Context, ex settlement.Exchange) (settlement.Exchange, error) {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return x.cfg.Store.UpdateExchange(sctx, ex, x.cfg.Now())
}

// RunResolver retries due PENDING exchanges with their original keys until ctx ends. An
// exchange whose partner's breaker is open waits (it is not counted as an attempt).
func (x *Exchanger) RunResolver(ctx context.Context) error {
	t := time.NewTicker(x.cfg.ResolveInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if err := x.ResolveDue(ctx); err != nil && ctx.Err() == nil {
			x.log.Error("exchange resolver", "err", err)
		}
	}
}

// resolveBatch bounds the exchanges one ResolveDue claims.
const resolveBatch = 50

// ResolveDue advances every PENDING exchange due now, once.
func (x *Exchanger) ResolveDue(ctx context.Context) error {
	due, err := x.cfg.Store.ClaimDueExchanges(ctx, x.cfg.Now(), 2*x.cfg.CallBudget, resolveBatch)
	if err != nil {
		return err
	}
	for _, ex := range due {
		if x.cfg.Partners.State(ex.ToPartner, OpCreditExchange) == gobreaker.StateOpen {
			ex.NextAttemptAt = x.cfg.Now().Add(x.cfg.ResolveBackoffBase)
			if _, err := x.save(ctx, ex); err != nil {
				return err
			}
			continue
		}
		done, err := x.advance(ctx, ex, nil)
		if err != nil {
			return err
		}
		if done.State != settlement.ExchangePending {
			x.log.Info("exchange resolved", "exchange", ex.ID, "state", string(done.State), "attempts", done.Attempts)
		}
	}
	return nil
}
