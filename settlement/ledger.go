package settlement

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Store applies commands to the books atomically. Implementations run each command in one
// retried SERIALIZABLE transaction that checks the idempotency record and applies every effect.
type Store interface {
	// Apply applies cmd exactly once per (PartnerID, IdempotencyKey). cmd is already valid and
	// carries its fingerprint. It returns the Outcome (Replayed set when read back), a recorded
	// business error (*Error with Recorded, possibly as *ReplayedError), ErrIdempotencyKeyReused,
	// ErrAmbiguousCommit, ErrTransactionConflict, or another error for system failures.
	Apply(ctx context.Context, cmd Command, fingerprint []byte, now time.Time) (Outcome, error)
	// Balance returns a member's balance, or ErrMemberNotFound.
	Balance(ctx context.Context, memberID string) (Balance, error)
	// ListTransactions returns up to limit of partnerID's transactions with memberID, newest
	// first, strictly after the position `after` when it is non-nil.
	ListTransactions(ctx context.Context, partnerID, memberID string, limit int, after *Page) ([]Transaction, error)
	// ReleaseExpiredHolds releases up to limit open holds whose TTL passed at now, each in its
	// own transaction, and returns how many it released.
	ReleaseExpiredHolds(ctx context.Context, now time.Time, limit int) (int, error)
}

// Config configures a Ledger.
type Config struct {
	Store  Store        // required
	Logger *slog.Logger // default slog.Default()
	Now    func() time.Time
}

// Ledger validates partner commands and applies them through the Store, exactly once per key.
type Ledger struct {
	store  Store
	log    *slog.Logger
	now    func() time.Time
	mu     sync.Mutex
	flight map[flightKey]struct{}
}

type flightKey struct{ partner, key string }

// New returns a Ledger.
func New(cfg Config) (*Ledger, error) {
	if cfg.Store == nil {
		return nil, errors.New("settlement: Config.Store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Ledger{store: cfg.Store, log: cfg.Logger, now: cfg.Now, flight: map[flightKey]struct{}{}}, nil
}

// Apply validates cmd and applies it. Errors: *ValidationError, ErrIdempotencyKeyInFlight
// (the same key is being applied by this process right now), and everything Store.Apply returns.
func (l *Ledger) Apply(ctx context.Context, cmd Command) (Outcome, error) {
	// The database keeps microseconds: a first response must equal what a replay reads back.
	now := l.now().Truncate(time.Microsecond)
	if err := Validate(cmd, now); err != nil {
		return Outcome{}, err
	}
	release, err := l.enter(cmd.PartnerID, cmd.IdempotencyKey)
	if err != nil {
		return Outcome{}, err
	}
	defer release()
	return l.store.Apply(ctx, cmd, Fingerprint(cmd), now)
}

// enter marks a key in flight in this process. Across processes the database's unique
// idempotency constraint serializes duplicates instead.
func (l *Ledger) enter(partnerID, key string) (func(), error) {
	k := flightKey{partnerID, key}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, busy := l.flight[k]; busy {
		return nil, ErrIdempotencyKeyInFlight
	}
	l.flight[k] = struct{}{}
	return func() {
		l.mu.Lock()
		delete(l.flight, k)
		l.mu.Unlock()
	}, nil
}

// Balance returns a member's balance. Errors: *ValidationError, ErrMemberNotFound.
func (l *Ledger) Balance(ctx context.Context, memberID string) (Balance, error) {
	if err := ValidateMemberID(memberID); err != nil {
		return Balance{}, err
	}
	return l.store.Balance(ctx, memberID)
}

// ListTransactions returns one page of partnerID's transactions with memberID, newest first,
// and the position to continue from (nil when there is no more).
func (l *Ledger) ListTransactions(ctx context.Context, partnerID, memberID string, pageSize int, after *Page) ([]Transaction, *Page, error) {
	if err := errors.Join(ValidateMemberID(memberID), ValidatePageSize(pageSize)); err != nil {
		return nil, nil, mergeValidation(err)
	}
	if pageSize == 0 {
		pageSize = DefaultPageSize
	}
	txns, err := l.store.ListTransactions(ctx, partnerID, memberID, pageSize+1, after)
	if err != nil {
		return nil, nil, err
	}
	if len(txns) <= pageSize {
		return txns, nil, nil
	}
	txns = txns[:pageSize]
	last := txns[len(txns)-1]
	return txns, &Page{CreatedAt: last.CreatedAt, ID: last.ID}, nil
}

// mergeValidation flattens joined validation errors into one *ValidationError.
func mergeValidation(err error) error {
	var merged ValidationError
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var ve *ValidationError
		if errors.As(e, &ve) {
			merged.Violations = append(merged.Violations, ve.Violations...)
		}
	}
	return &merged
}

// defaultSweepBatch is SweepHolds' batch size when the caller passes none.
const defaultSweepBatch = 100

// SweepHolds releases open holds whose TTL has passed, in batches of batchSize (0 or less:
// defaultSweepBatch), until none is left or ctx ends. It returns how many it released.
func (l *Ledger) SweepHolds(ctx context.Context, batchSize int) (int, error) {
	if batchSize <= 0 {
		// A batch of 0 would release nothing and never see a short batch: it would spin.
		batchSize = defaultSweepBatch
	}
	total := 0
	for ctx.Err() == nil {
		n, err := l.store.ReleaseExpiredHolds(ctx, l.now(), batchSize)
		total += n
		if err != nil || n < batchSize {
			return total, err
		}
	}
	return total, ctx.Err()
}

// RunHoldSweeper calls SweepHolds every interval until ctx ends; errors are logged, not fatal.
func (l *Ledger) RunHoldSweeper(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := l.SweepHolds(ctx, defaultSweepBatch)
		if err != nil && ctx.Err() == nil {
			l.log.Error("hold sweep", "err", err)
		}
		if n > 0 {
			l.log.Info("released expired holds", "count", n)
		}
	}
}
