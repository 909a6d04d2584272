package sqlstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionexchange/coalition/settlement"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migration is one forward-only schema change: exactly one DDL statement.
type Migration struct {
	Version int64
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	out := make([]Migration, 0, len(names))
	for _, path := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(path, "migrations/"), ".sql")
		num, _, ok := strings.Cut(base, "_")
		version, err := strconv.ParseInt(num, 10, 64)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", path)
		}
		body, err := migrationFiles.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && out[len(out)-1].Version >= version {
			return nil, fmt.Errorf("migration %s: version %d is not increasing", path, version)
		}
		out = append(out, Migration{Version: version, Name: base, SQL: string(body)})
	}
	return out, nil
}

const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INT8 PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)`

// Migrate applies every embedded migration not yet applied, each in its own transaction
// together with its schema_migrations row, and returns how many it applied. Concurrent
// migrators are safe: the loser of a race on a version sees it applied and moves on.
func Migrate(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) (int, error) {
	if log == nil {
		log = slog.Default()
	}
	migrations, err := Migrations()
	if err != nil {
		return 0, err
	}
	// On PostgreSQL, CREATE TABLE IF NOT EXISTS racing another migrator's can fail once the
	// other commits: the table exists then, which is all we need.
	if _, err := pool.Exec(ctx, createMigrationsTable); err != nil && !isConcurrentDDL(err) {
		return 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	runner, err := NewRunner(pool, RunnerConfig{})
	if err != nil {
		return 0, err
	}
	// The versions already applied, read once: a restart of an up-to-date gateway runs no
	// transaction per migration. Each pending one still checks again in its own transaction.
	done := map[int64]bool{}
	rows, err := pool.Query(ctx, `SELECT version FROM schema_migrations`)
	if err != nil {
		return 0, fmt.Errorf("read schema_migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("read schema_migrations: %w", err)
	}
	for _, v := range versions {
		done[v] = true
	}
	applied := 0
	for _, m := range migrations {
		if done[m.Version] {
			continue
		}
		did, err := applyMigration(ctx, runner, m)
		if err != nil {
			return applied, fmt.Errorf("migration %s: %w", m.Name, err)
		}
		if did {
			applied++
			log.Info("applied migration", "version", m.Version, "name", m.Name)
		}
	}
	return applied, nil
}

// concurrentDDLAttempts bounds applyMigration's attempts; each failure means another
// migrator committed the migration, so the second attempt already sees it applied.
const concurrentDDLAttempts = 3

// ambiguousMigrationAttempts bounds the attempts after a COMMIT whose outcome was unknown.
const ambiguousMigrationAttempts = 10

// applyMigration applies m unless schema_migrations has it, and reports whether it did.
func applyMigration(ctx context.Context, runner *Runner, m Migration) (bool, error) {
	ambiguous := 0
	for attempt := 1; ; attempt++ {
		did, err := applyMigrationOnce(ctx, runner, m)
		if errors.Is(err, settlement.ErrAmbiguousCommit) && ambiguous < ambiguousMigrationAttempts {
			// COMMIT's outcome is unknown (a connection cut): schema_migrations, read again
			// in the next attempt, tells whether the migration is in.
			ambiguous++
			attempt--
			continue
		}
		if err == nil && !did && ambiguous > 0 {
			did = true // found applied after our own unknown commit: most likely ours
		}
		// Our DDL lost a race with another migrator's identical DDL: look again. A genuine
		// failure (say a unique index on duplicate rows) fails again and is returned.
		if !isConcurrentDDL(err) || attempt == concurrentDDLAttempts {
			return did, err
		}
	}
}

func applyMigrationOnce(ctx context.Context, runner *Runner, m Migration) (bool, error) {
	did := false
	err := runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		did = false
		var exists bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)`, m.Version).Scan(&exists)
		if err != nil || exists {
			return err
		}
		if _, err := tx.Exec(ctx, m.SQL); err != nil {
			return fmt.Errorf("exec: %w", err)
		}
		tag, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2) ON CONFLICT (version) DO NOTHING`, m.Version, m.Name)
		if err != nil {
			return err
		}
		did = tag.RowsAffected() == 1
		return nil
	})
	return did, err
}

// SchemaVersion returns the highest applied migration version (0 when none).
func SchemaVersion(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var v *int64
	err := pool.QueryRow(ctx, `SELECT max(version) FROM schema_migrations`).Scan(&v)
	if err != nil {
		return 0, err
	}
	if v == nil {
		return 0, nil
	}
	return *v, nil
}

// isConcurrentDDL reports the errors PostgreSQL raises when a concurrent transaction committed
// the same CREATE … IF NOT EXISTS first (the existence check and the catalog insert are not
// atomic): unique_violation on a catalog index, duplicate_table, duplicate_object.
func isConcurrentDDL(err error) bool {
	var s interface{ SQLState() string }
	if err == nil || !errors.As(err, &s) {
		return false
	}
	switch s.SQLState() {
	case sqlstateUniqueViolation, "42P07", "42710":
		return true
	default:
		return false
	}
}
