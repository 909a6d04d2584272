package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/sqlstoretest"
)

// retryLog collects what RunnerConfig.OnRetry is told.
type retryLog struct {
	mu    sync.Mutex
	codes []string // SQLSTATE of each retried error ("" when it has none)
	errs  []error
}

func (l *retryLog) onRetry(attempt int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	code := ""
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		code = pgErr.Code
	}
	l.codes = append(l.codes, code)
	l.errs = append(l.errs, err)
}

func (l *retryLog) snapshot() ([]string, []error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.codes...), append([]error(nil), l.errs...)
}

// kvPool returns a pool on a fresh database with table kv holding the given keys at 0.
func kvPool(t *testing.T, keys ...string) *pgxpool.Pool {
	t.Helper()
	pool := openPool(t, sqlstoretest.NewDatabase(t), 4)
	if _, err := pool.Exec(ctxFor(t), `CREATE TABLE kv (k TEXT PRIMARY KEY, v INT8 NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, err := pool.Exec(ctxFor(t), `INSERT INTO kv (k, v) VALUES ($1, 0)`, k); err != nil {
			t.Fatal(err)
		}
	}
	return pool
}

func kvGet(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, k string) (int64, error) {
	var v int64
	if err := q.QueryRow(ctx, `SELECT v FROM kv WHERE k = $1`, k).Scan(&v); err != nil {
		return 0, fmt.Errorf("read %s: %w", k, err)
	}
	return v, nil
}

func kvSet(ctx context.Context, tx pgx.Tx, k string, v int64) error {
	if _, err := tx.Exec(ctx, `UPDATE kv SET v = $2 WHERE k = $1`, k, v); err != nil {
		return fmt.Errorf("write %s: %w", k, err)
	}
	return nil
}

func newRunner(t *testing.T, pool *pgxpool.Pool, cfg sqlstore.RunnerConfig) *sqlstore.Runner {
	t.Helper()
	r, err := sqlstore.NewRunner(pool, cfg)
	if err != nil {
		t.Fatalf("NewRunner: %v", err)
	}
	return r
}

// TestRunnerRetriesCommitTimeSerializationFailure builds a write skew in which both closures
// complete: T1 reads x and writes y, T2 reads y and writes x, each having read and written
// before either commits. T1 commits; PostgreSQL can then only fail T2, and it does so at
// COMMIT. The runner must retry T2 (never report it as success), and the retry must see T1.
func TestRunnerRetriesCommitTimeSerializationFailure(t *testing.T) {
	pool := kvPool(t, "x", "y")
	var log1, log2 retryLog
	r1 := newRunner(t, pool, sqlstore.RunnerConfig{BackoffBase: time.Millisecond, OnRetry: log1.onRetry})
	r2 := newRunner(t, pool, sqlstore.RunnerConfig{BackoffBase: time.Millisecond, OnRetry: log2.onRetry})

	read1, read2 := make(chan struct{}), make(chan struct{})
	wrote1, wrote2 := make(chan struct{}), make(chan struct{})
	t1Done := make(chan struct{})
	var attempts1, attempts2 atomic.Int32
	var closure2 sync.Map // attempt number -> what T2's closure returned

	ctx := ctxFor(t)
	var wg sync.WaitGroup
	var err1, err2 error
	wg.Go(func() {
		defer close(t1Done)
		err1 = r1.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
			first := attempts1.Add(1) == 1
			x, err := kvGet(ctx, tx, "x")
			if err != nil {
				return err
			}
			if first {
				close(read1)
				<-read2
			}
			if err := kvSet(ctx, tx, "y", x+10); err != nil {
				return err
			}
			if first {
				close(wrote1)
				<-wrote2
			}
			return nil
		})
	})
	wg.Go(func() {
		err2 = r2.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
			n := attempts2.Add(1)
			err := func() error {
				y, err := kvGet(ctx, tx, "y")
				if err != nil {
					return err
				}
				if n == 1 {
					close(read2)
					<-read1
				}
				if err := kvSet(ctx, tx, "x", y+100); err != nil {
					return err
				}
				if n == 1 {
					close(wrote2)
					<-wrote1
					<-t1Done // commit only once T1 has
				}
				return nil
			}()
			closure2.Store(n, err)
			return err
		})
	})
	wg.Wait()

	if err1 != nil || err2 != nil {
		t.Fatalf("Run: got %v and %v, want nil and nil", err1, err2)
	}
	if got := attempts1.Load(); got != 1 {
		t.Errorf("T1 attempts: got %d, want 1", got)
	}
	if got := attempts2.Load(); got != 2 {
		t.Errorf("T2 attempts: got %d, want 2 (the first failed at COMMIT)", got)
	}
	if got, ok := closure2.Load(int32(1)); !ok || got != nil {
		t.Errorf("T2 attempt 1 closure: got %v (ran %v), want nil: the failure must come from COMMIT", got, ok)
	}
	codes, errs := log2.snapshot()
	if len(codes) != 1 || codes[0] != "40001" {
		t.Errorf("T2 OnRetry SQLSTATEs: got %q (%v), want [40001]", codes, errs)
	}
	if len(errs) == 1 && !strings.Contains(errs[0].Error(), "commit") {
		t.Errorf("T2 retried error: got %q, want it raised by commit", errs[0])
	}
	if codes, _ := log1.snapshot(); len(codes) != 0 {
		t.Errorf("T1 OnRetry: got %q, want no retry", codes)
	}
	x, err := kvGet(ctxFor(t), pool, "x")
	if err != nil {
		t.Fatal(err)
	}
	y, err := kvGet(ctxFor(t), pool, "y")
	if err != nil {
		t.Fatal(err)
	}
	// Serial order T1 then T2: y = 0+10, x = 10+100. Both from stale reads would give x = 100.
	if x != 110 || y != 10 {
		t.Errorf("final x, y: got %d, %d; want 110, 10 (T1 then T2)", x, y)
	}
}

// TestRunnerRetriesDeadlock: two transactions lock two rows in opposite orders; PostgreSQL
// aborts one with 40P01, which the runner retries, so both finish.
func TestRunnerRetriesDeadlock(t *testing.T) {
	pool := kvPool(t, "a", "b")
	var log retryLog
	r := newRunner(t, pool, sqlstore.RunnerConfig{BackoffBase: time.Millisecond, OnRetry: log.onRetry})
	locked := map[string]chan struct{}{"a": make(chan struct{}), "b": make(chan struct{})}
	ctx := ctxFor(t)

	run := func(first, second string) error {
		var attempts atomic.Int32
		return r.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
			n := attempts.Add(1)
			if _, err := tx.Exec(ctx, `UPDATE kv SET v = v + 1 WHERE k = $1`, first); err != nil {
				return fmt.Errorf("lock %s: %w", first, err)
			}
			if n == 1 {
				close(locked[first])
				<-locked[second]
			}
			if _, err := tx.Exec(ctx, `UPDATE kv SET v = v + 1 WHERE k = $1`, second); err != nil {
				return fmt.Errorf("lock %s: %w", second, err)
			}
			return nil
		})
	}
	var wg sync.WaitGroup
	var errAB, errBA error
	wg.Go(func() { errAB = run("a", "b") })
	wg.Go(func() { errBA = run("b", "a") })
	wg.Wait()
	if errAB != nil || errBA != nil {
		t.Fatalf("Run: got %v and %v, want nil and nil", errAB, errBA)
	}
	codes, errs := log.snapshot()
	sawDeadlock := false
	for _, c := range codes {
		sawDeadlock = sawDeadlock || c == "40P01"
	}
	if !sawDeadlock {
		t.Errorf("OnRetry SQLSTATEs: got %q (%v), want a 40P01 among them", codes, errs)
	}
	for _, k := range []string{"a", "b"} {
		if v, err := kvGet(ctxFor(t), pool, k); err != nil || v != 2 {
			t.Errorf("%s: got %d (%v), want 2 (each transaction once)", k, v, err)
		}
	}
}

func TestRunnerRetryBound(t *testing.T) {
	pool := openPool(t, sqlstoretest.NewDatabase(t), 2)
	const maxRetries = 4
	var log retryLog
	r := newRunner(t, pool, sqlstore.RunnerConfig{MaxRetries: maxRetries, BackoffBase: time.Millisecond,
		BackoffMax: 2 * time.Millisecond, OnRetry: log.onRetry})
	attempts := 0
	err := r.Run(ctxFor(t), func(ctx context.Context, tx pgx.Tx) error {
		attempts++
		return fmt.Errorf("always: %w", &pgconn.PgError{Code: "40001", Message: "could not serialize access"})
	})
	if !errors.Is(err, settlement.ErrTransactionConflict) {
		t.Errorf("Run: got %v, want ErrTransactionConflict", err)
	}
	if attempts != maxRetries+1 {
		t.Errorf("attempts: got %d, want %d (MaxRetries+1)", attempts, maxRetries+1)
	}
	if codes, _ := log.snapshot(); len(codes) != maxRetries {
		t.Errorf("OnRetry calls: got %d, want %d", len(codes), maxRetries)
	}
}

func TestRunnerDoesNotRetryOtherErrors(t *testing.T) {
	pool := openPool(t, sqlstoretest.NewDatabase(t), 2)
	r := newRunner(t, pool, sqlstore.RunnerConfig{})
	tests := []struct {
		name string
		err  error
	}{
		{"domain error", fmt.Errorf("%w: m-1", settlement.ErrInsufficientPoints)},
		{"unique violation", fmt.Errorf("insert: %w", &pgconn.PgError{Code: "23505"})},
		{"plain error", errors.New("boom")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attempts := 0
			err := r.Run(ctxFor(t), func(ctx context.Context, tx pgx.Tx) error {
				attempts++
				return tt.err
			})
			if !errors.Is(err, tt.err) || attempts != 1 {
				t.Errorf("Run: got %v after %d attempts, want %v after 1", err, attempts, tt.err)
			}
		})
	}
}

func TestRunnerRollsBackFailedClosure(t *testing.T) {
	pool := kvPool(t, "a")
	r := newRunner(t, pool, sqlstore.RunnerConfig{})
	boom := errors.New("boom")
	err := r.Run(ctxFor(t), func(ctx context.Context, tx pgx.Tx) error {
		if err := kvSet(ctx, tx, "a", 42); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Run: got %v, want boom", err)
	}
	if v, err := kvGet(ctxFor(t), pool, "a"); err != nil || v != 0 {
		t.Errorf("a after a failed closure: got %d (%v), want 0", v, err)
	}
}

func TestNewRunnerChecksConfig(t *testing.T) {
	if _, err := sqlstore.NewRunner(nil, sqlstore.RunnerConfig{}); err == nil {
		t.Error("NewRunner(nil pool): got nil error, want one")
	}
	pool := openPool(t, sqlstoretest.NewDatabase(t), 1)
	if _, err := sqlstore.NewRunner(pool, sqlstore.RunnerConfig{MaxRetries: -1}); err == nil {
		t.Error("NewRunner(MaxRetries -1): got nil error, want one")
	}
}

// TestRunnerAmbiguousResultAtCommit: CockroachDB answers a COMMIT whose outcome it does not know
// with SQLSTATE 40003 ("result is ambiguous"). That is an unknown outcome: both runners must
// report ErrAmbiguousCommit and run nothing again, not a definite failure they retry. On
// PostgreSQL a deferred constraint trigger of this test raises 40003 at COMMIT; on CockroachDB
// crdb_internal.force_error raises it in the round trip that carries COMMIT (pipelined runner).
func TestRunnerAmbiguousResultAtCommit(t *testing.T) {
	pool := kvPool(t, "a")
	ctx := ctxFor(t)
	var version string
	if err := pool.QueryRow(ctx, `SELECT version()`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	cockroach := strings.Contains(version, "CockroachDB")
	if !cockroach {
		for _, ddl := range []string{
			`CREATE FUNCTION ambiguous() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN RAISE EXCEPTION 'result is ambiguous (test)' USING ERRCODE = '40003'; END $$`,
			`CREATE CONSTRAINT TRIGGER ambiguous AFTER INSERT ON kv DEFERRABLE INITIALLY DEFERRED
				FOR EACH ROW WHEN (NEW.k = 'ambiguous') EXECUTE FUNCTION ambiguous()`,
		} {
			if _, err := pool.Exec(ctx, ddl); err != nil {
				t.Fatal(err)
			}
		}
	}
	r := newRunner(t, pool, sqlstore.RunnerConfig{BackoffBase: time.Millisecond})
	if !cockroach {
		attempts := 0
		err := r.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
			attempts++
			_, err := tx.Exec(ctx, `INSERT INTO kv (k, v) VALUES ('ambiguous', 1)`)
			return err
		})
		if !errors.Is(err, settlement.ErrAmbiguousCommit) || attempts != 1 {
			t.Errorf("Run, COMMIT answering 40003: got %v after %d attempts, want ErrAmbiguousCommit after 1", err, attempts)
		}
	}
	attempts := 0
	err := r.RunPipelined(ctx, func(p *sqlstore.Pipeline) {
		p.First.Queue(`SELECT 1`)
	}, func(ctx context.Context, tx pgx.Tx, p *sqlstore.Pipeline) error {
		attempts++
		if cockroach {
			p.Last.Queue(`SELECT crdb_internal.force_error('40003', 'result is ambiguous (test)')`)
		} else {
			p.Last.Queue(`INSERT INTO kv (k, v) VALUES ('ambiguous', 1)`)
		}
		return nil
	})
	if !errors.Is(err, settlement.ErrAmbiguousCommit) || attempts != 1 {
		t.Errorf("RunPipelined, 40003 in the COMMIT round trip: got %v after %d attempts, want ErrAmbiguousCommit after 1", err, attempts)
	}
	// The connection is usable afterwards.
	if v, err := kvGet(ctx, pool, "a"); err != nil || v != 0 {
		t.Errorf("a: got %d (%v), want 0", v, err)
	}
}
