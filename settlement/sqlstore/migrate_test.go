package sqlstore_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionexchange/coalition/settlement/sqlstore"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/sqlstoretest"
)

func openPool(t *testing.T, url string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := sqlstore.Open(ctx, url, maxConns)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestMigrations(t *testing.T) {
	ms, err := sqlstore.Migrations()
	if err != nil {
		t.Fatalf("Migrations: %v", err)
	}
	if len(ms) == 0 {
		t.Fatal("Migrations: got none, want the embedded schema")
	}
	// Versions are dense within a block; a new block may start at a multiple of 100 (0100:
	// partner calls), so work on separate features does not clash over numbers.
	prev := int64(0)
	for i, m := range ms {
		if m.Version != prev+1 && (m.Version%100 != 0 || m.Version <= prev) {
			t.Errorf("migration %d: got version %d (%s), want %d or a new block at a multiple of 100", i, m.Version, m.Name, prev+1)
		}
		prev = m.Version
	}
}

func TestMigrateTwice(t *testing.T) {
	ms, err := sqlstore.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	pool := openPool(t, sqlstoretest.NewDatabase(t), 4)
	ctx := ctxFor(t)
	if got, err := sqlstore.SchemaVersion(ctx, pool); err == nil {
		t.Errorf("SchemaVersion before Migrate: got %d, want an error (no schema_migrations table)", got)
	}
	for i, want := range []int{len(ms), 0} {
		got, err := sqlstore.Migrate(ctx, pool, quiet)
		if err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
		if got != want {
			t.Errorf("Migrate #%d: got %d applied, want %d", i+1, got, want)
		}
	}
	version, err := sqlstore.SchemaVersion(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if want := ms[len(ms)-1].Version; version != want {
		t.Errorf("SchemaVersion: got %d, want %d", version, want)
	}
}

// TestMigrateConcurrently runs two migrators, as two replicas starting at once would, each
// with its own pool: both succeed and each migration is applied exactly once.
func TestMigrateConcurrently(t *testing.T) {
	ms, err := sqlstore.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t)
	for round := range 3 {
		url := sqlstoretest.NewDatabase(t)
		pools := []*pgxpool.Pool{openPool(t, url, 2), openPool(t, url, 2)}
		applied := make([]int, len(pools))
		errs := make([]error, len(pools))
		var wg sync.WaitGroup
		for i, pool := range pools {
			wg.Go(func() { applied[i], errs[i] = sqlstore.Migrate(ctx, pool, quiet) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("round %d: Migrate #%d: %v", round, i+1, err)
			}
		}
		if got, want := applied[0]+applied[1], len(ms); got != want {
			t.Errorf("round %d: migrations applied: got %d+%d, want %d in all", round, applied[0], applied[1], want)
		}
		var rows int64
		if err := pools[0].QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != int64(len(ms)) {
			t.Errorf("round %d: schema_migrations rows: got %d, want %d", round, rows, len(ms))
		}
	}
}

// TestMigrateThroughUnknownCommits: a migration whose COMMIT outcome is unknown is looked up
// again, not reported as a failure (the soak's restarts, with injected failures, failed on
// them), and an up-to-date schema runs no transaction at all.
func TestMigrateThroughUnknownCommits(t *testing.T) {
	ms, err := sqlstore.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	pool := openPool(t, sqlstoretest.NewDatabase(t), 4)
	ctx := ctxFor(t)
	// A fifth of the attempts fail: three in four as serialization failures (retried by the
	// runner), one in four with an unknown outcome, half of those after a real COMMIT.
	t.Setenv("COALITION_TEST_INJECT_FAILURE_RATE", "0.2")
	got, err := sqlstore.Migrate(ctx, pool, quiet)
	if err != nil {
		t.Fatalf("Migrate with injected failures: %v", err)
	}
	if got < len(ms)*9/10 || got > len(ms) {
		t.Errorf("Migrate: %d reported applied, want about %d", got, len(ms))
	}
	var rows int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != int64(len(ms)) {
		t.Errorf("schema_migrations rows: got %d, want %d", rows, len(ms))
	}
	// Every transaction would fail now (99%): an up-to-date schema must not need one.
	t.Setenv("COALITION_TEST_INJECT_FAILURE_RATE", "0.99")
	if got, err := sqlstore.Migrate(ctx, pool, quiet); err != nil || got != 0 {
		t.Errorf("Migrate again: (%d, %v), want (0, nil) without a transaction", got, err)
	}
}
