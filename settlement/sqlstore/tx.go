package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionexchange/coalition/settlement"
)

// SQLSTATEs the runner treats as "run the whole transaction again".
const (
	sqlstateSerializationFailure = "40001"
	sqlstateDeadlockDetected     = "40P01"
	// sqlstateUniqueViolation is not retried: isKeyConflict reads it.
	sqlstateUniqueViolation = "23505"
	// sqlstateStatementCompletionUnknown is CockroachDB's "result is ambiguous": the server
	// answered, but does not know whether the transaction committed (a node failed during the
	// commit). It is an unknown outcome, not a refusal.
	sqlstateStatementCompletionUnknown = "40003"
)

// isAmbiguousResult reports CockroachDB's "result is ambiguous" (SQLSTATE 40003).
func isAmbiguousResult(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == sqlstateStatementCompletionUnknown
}

// commitTimeout bounds COMMIT on a context detached from the caller's: a caller that gives up
// mid-commit must not turn a definite outcome into an ambiguous one.
const commitTimeout = 10 * time.Second

// RunnerConfig configures the transaction runner.
type RunnerConfig struct {
	// MaxRetries is how many times a transaction is re-run after a retryable failure. Must be
	// positive; default 20.
	MaxRetries int
	// BackoffBase is the first retry's maximum delay; it doubles per attempt up to BackoffMax.
	// Defaults 2ms and 200ms. The actual delay is uniformly random below the cap (full jitter).
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// OnRetry, when set, is told about each retry (metrics, tests): attempt is the number of the
	// attempt that failed (1 = the first) and err its retryable error.
	OnRetry func(attempt int, err error)
	// InjectFailureRate is a test hook for the correctness workload (`coalition soak`); never
	// set it in production. When positive, each attempt, after fn ran and before COMMIT, is
	// failed with this probability: three times in four with a synthetic SQLSTATE 40001 that
	// the runner retries, once in four as settlement.ErrAmbiguousCommit, half of those after a
	// real COMMIT and half after a rollback, so the caller cannot know which. Zero reads the
	// environment variable COALITION_TEST_INJECT_FAILURE_RATE (a fraction, e.g. 0.05), so a
	// gateway subprocess can be put in this mode without a flag.
	InjectFailureRate float64
}

// injectFailureRateEnv is the environment variable read when InjectFailureRate is zero.
const injectFailureRateEnv = "COALITION_TEST_INJECT_FAILURE_RATE"

// Runner runs closures in SERIALIZABLE transactions, retrying 40001 (both engines) and 40P01
// (PostgreSQL deadlocks) around the whole BEGIN…COMMIT, including failures raised by COMMIT.
type Runner struct {
	pool *pgxpool.Pool
	cfg  RunnerConfig
}

// NewRunner returns a Runner on pool.
func NewRunner(pool *pgxpool.Pool, cfg RunnerConfig) (*Runner, error) {
	if pool == nil {
		return nil, errors.New("sqlstore: runner needs a pool")
	}
	if cfg.MaxRetries < 0 {
		return nil, fmt.Errorf("sqlstore: MaxRetries must be positive, got %d", cfg.MaxRetries)
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = 20
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = 2 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 200 * time.Millisecond
	}
	if v := os.Getenv(injectFailureRateEnv); cfg.InjectFailureRate == 0 && v != "" {
		rate, err := strconv.ParseFloat(v, 64)
		if err != nil || rate < 0 || rate >= 1 {
			return nil, fmt.Errorf("sqlstore: %s=%q: want a fraction in [0, 1)", injectFailureRateEnv, v)
		}
		cfg.InjectFailureRate = rate
	}
	return &Runner{pool: pool, cfg: cfg}, nil
}

// Run runs fn in a transaction and commits it. fn must touch only the database and return
// database errors wrapped with %w, or retries silently stop. Errors: whatever fn returns,
// settlement.ErrAmbiguousCommit when COMMIT's outcome is unknown, settlement.ErrTransactionConflict
// when the retry bound is exhausted.
func (r *Runner) Run(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return r.retry(ctx, func(ctx context.Context) error { return r.once(ctx, fn) })
}

// retry runs attempt until it succeeds, fails with an error that is not retryable, or the
// retry bound is exhausted, with jittered backoff between attempts.
func (r *Runner) retry(ctx context.Context, attemptFn func(ctx context.Context) error) error {
	attempt := 0
	var lastErr error
	err := crdb.ExecuteCtx(crdb.WithMaxRetries(ctx, r.cfg.MaxRetries), func(ctx context.Context, _ ...any) error {
		if attempt > 0 {
			// ExecuteCtx calls again only after a retryable failure: this is a retry.
			if r.cfg.OnRetry != nil {
				r.cfg.OnRetry(attempt, lastErr)
			}
			if err := r.sleep(ctx, attempt); err != nil {
				return err
			}
		}
		attempt++
		lastErr = attemptFn(ctx)
		return lastErr
	})
	var maxed *crdb.MaxRetriesExceededError
	if errors.As(err, &maxed) {
		return fmt.Errorf("%w (%d attempts): %v", settlement.ErrTransactionConflict, attempt, err)
	}
	return err
}

func (r *Runner) once(ctx context.Context, fn func(ctx context.Context, tx pgx.Tx) error) error {
	tx, err := r.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return retryable(fmt.Errorf("begin: %w", err))
	}
	if err := fn(ctx, tx); err != nil {
		rollback(tx)
		return retryable(err)
	}
	failBefore, failAfter := r.inject()
	if failBefore != nil {
		rollback(tx)
		return failBefore
	}
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := tx.Commit(commitCtx); err != nil {
		var pgErr *pgconn.PgError
		if errors.Is(err, pgx.ErrTxCommitRollback) {
			return fmt.Errorf("commit rolled back: %w", err) // definitely not committed
		}
		if isAmbiguousResult(err) {
			return fmt.Errorf("%w: commit: %v", settlement.ErrAmbiguousCommit, err)
		}
		if errors.As(err, &pgErr) {
			// The server answered: the transaction did not commit.
			return retryable(fmt.Errorf("commit: %w", err))
		}
		return fmt.Errorf("%w: commit: %v", settlement.ErrAmbiguousCommit, err)
	}
	if failAfter {
		return errInjectedAfterCommit
	}
	return nil
}

// inject draws InjectFailureRate's fate for one attempt (see RunnerConfig): failBefore is the
// error to fail it with before COMMIT, or failAfter asks for errInjectedAfterCommit once the
// attempt has really committed; neither when the attempt is spared.
func (r *Runner) inject() (failBefore error, failAfter bool) {
	if r.cfg.InjectFailureRate <= 0 || rand.Float64() >= r.cfg.InjectFailureRate {
		return nil, false
	}
	if rand.IntN(8) == 7 {
		return nil, true
	}
	if rand.IntN(7) < 6 {
		return &retryError{err: errors.New("injected serialization failure (InjectFailureRate test hook)")}, false
	}
	return fmt.Errorf("%w: injected after rollback (InjectFailureRate test hook)", settlement.ErrAmbiguousCommit), false
}

// errInjectedAfterCommit is the unknown outcome InjectFailureRate reports for an attempt that
// committed.
var errInjectedAfterCommit = fmt.Errorf("%w: injected after commit (InjectFailureRate test hook)", settlement.ErrAmbiguousCommit)

func rollback(tx pgx.Tx) {
	ctx, cancel := context.WithTimeout(context.Background(), commitTimeout)
	defer cancel()
	// The transaction is abandoned either way; a failed rollback closes the connection.
	_ = tx.Rollback(ctx)
}

func (r *Runner) sleep(ctx context.Context, attempt int) error {
	capDelay := r.cfg.BackoffBase << min(attempt-1, 16)
	if capDelay > r.cfg.BackoffMax || capDelay <= 0 {
		capDelay = r.cfg.BackoffMax
	}
	return sleepCtx(ctx, rand.N(capDelay)+1)
}

// sleepCtx waits d, or less if ctx ends first (then it returns ctx's error).
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// retryError presents a PostgreSQL deadlock as a serialization failure, the one code
// crdb.ExecuteCtx retries, and keeps the original in the chain.
type retryError struct{ err error }

func (e *retryError) Error() string    { return e.err.Error() }
func (e *retryError) Unwrap() error    { return e.err }
func (e *retryError) SQLState() string { return sqlstateSerializationFailure }

func retryable(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == sqlstateDeadlockDetected {
		return &retryError{err: err}
	}
	return err
}
