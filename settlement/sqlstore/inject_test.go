package sqlstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// TestRunnerInjectFailureRate: the test hook fails attempts with retried serialization
// failures and with ambiguous commits, some of which committed and some not. Resolving each
// ambiguous outcome by looking at the database, the final state is exactly one increment per
// committed run, as without the hook.
func TestRunnerInjectFailureRate(t *testing.T) {
	pool := kvPool(t, "a")
	var log retryLog
	r, err := sqlstore.NewRunner(pool, sqlstore.RunnerConfig{InjectFailureRate: 0.5, OnRetry: log.onRetry})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	const runs = 200
	ok, ambiguous := countInjected(t, runs, func() error {
		return r.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE kv SET v = v + 1 WHERE k = 'a'`)
			return err
		})
	})
	var v int
	if err := pool.QueryRow(ctx, `SELECT v FROM kv WHERE k = 'a'`).Scan(&v); err != nil {
		t.Fatal(err)
	}
	codes, _ := log.snapshot()
	// About 1 in 8 runs ends ambiguous: half of those committed.
	if ambiguous == 0 || len(codes) == 0 {
		t.Fatalf("%d ambiguous outcomes, %d retries: the hook did not fire", ambiguous, len(codes))
	}
	if v < ok || v > ok+ambiguous {
		t.Errorf("value %d after %d ok and %d ambiguous runs: want between %d and %d", v, ok, ambiguous, ok, ok+ambiguous)
	}
	t.Logf("%d runs: %d ok, %d ambiguous (%d committed), %d injected retries", runs, ok, ambiguous, v-ok, len(codes))
}

// TestRunnerInjectFailureRateEnv: the hook is off by default and set from the environment.
func TestRunnerInjectFailureRateEnv(t *testing.T) {
	pool := kvPool(t)
	t.Setenv("COALITION_TEST_INJECT_FAILURE_RATE", "2")
	if _, err := sqlstore.NewRunner(pool, sqlstore.RunnerConfig{}); err == nil {
		t.Error("rate 2 from the environment: want an error")
	}
	t.Setenv("COALITION_TEST_INJECT_FAILURE_RATE", "0.99")
	r, err := sqlstore.NewRunner(pool, sqlstore.RunnerConfig{MaxRetries: 1})
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for range 20 {
		if r.Run(ctxFor(t), func(context.Context, pgx.Tx) error { return nil }) != nil {
			failed++
		}
	}
	if failed < 15 {
		t.Errorf("rate 0.99 from the environment: %d of 20 runs failed, want nearly all", failed)
	}
}

// countInjected calls run n times and counts its successes and the ambiguous outcomes the
// InjectFailureRate hook produced; any other error fails the test.
func countInjected(t *testing.T, n int, run func() error) (ok, ambiguous int) {
	t.Helper()
	for range n {
		err := run()
		switch {
		case err == nil:
			ok++
		case errors.Is(err, settlement.ErrAmbiguousCommit) && strings.Contains(err.Error(), "test hook"):
			ambiguous++
		default:
			t.Fatalf("run: %v", err)
		}
	}
	return ok, ambiguous
}
