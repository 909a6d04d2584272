package localpg

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// requirePostgres skips (or, in CI, fails) when there is nothing to start.
func requirePostgres(t *testing.T) {
	t.Helper()
	if _, err := FindPostgresBin(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must have PostgreSQL: %v", err)
		}
		t.Skipf("skipping: %v", err)
	}
}

// testConfig returns a config whose Dir does not exist yet, under a parent the
// unprivileged server user can traverse (t.TempDir's parent is 0700).
func testConfig(t *testing.T) Config {
	t.Helper()
	parent, err := os.MkdirTemp("", "localpg-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(parent) })
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}
	return Config{
		Dir:    filepath.Join(parent, "a", "data"), // "a" exercises creating parents
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

func stop(t *testing.T, s *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
}

// execSQL runs sql on url and returns the first column of the first row, if any.
func execSQL(t *testing.T, url, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer rows.Close()
	var out string
	if rows.Next() {
		if err := rows.Scan(&out); err != nil {
			t.Fatalf("%s: scan: %v", sql, err)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func TestStartCreateRestart(t *testing.T) {
	requirePostgres(t)
	cfg := testConfig(t)
	s := start(t, cfg)
	if s.Engine() != EnginePostgreSQL {
		t.Fatalf("engine = %q, want %q", s.Engine(), EnginePostgreSQL)
	}
	ctx := t.Context()
	for range 2 { // the second call checks "if not exists"
		if err := s.CreateDatabase(ctx, "app_1"); err != nil {
			t.Fatalf("create database: %v", err)
		}
	}
	url := s.URL("app_1")
	if got := execSQL(t, url, "SHOW transaction_isolation"); got != "serializable" {
		t.Fatalf("transaction_isolation = %q, want serializable", got)
	}
	if got := execSQL(t, url, "SHOW fsync"); got != "off" {
		t.Fatalf("non-durable fsync = %q, want off", got)
	}
	execSQL(t, url, "CREATE TABLE kept (v TEXT)")
	execSQL(t, url, "INSERT INTO kept VALUES ('survives restart')")
	stop(t, s)
	if _, err := os.Stat(filepath.Join(cfg.Dir, "server.log")); err != nil {
		t.Fatalf("server log: %v", err)
	}

	cfg.Durable = true
	s = start(t, cfg)
	url = s.URL("app_1")
	if got := execSQL(t, url, "SELECT v FROM kept"); got != "survives restart" {
		t.Fatalf("after restart got %q", got)
	}
	if got := execSQL(t, url, "SHOW fsync"); got != "on" {
		t.Fatalf("durable fsync = %q, want on", got)
	}
	stop(t, s)
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
}

// TestStaleServerTakenOver simulates a parent killed before Stop: a second
// Start on the same Dir must stop the first postmaster and start cleanly.
func TestStaleServerTakenOver(t *testing.T) {
	requirePostgres(t)
	cfg := testConfig(t)
	first := start(t, cfg)
	second := start(t, cfg)
	select {
	case <-first.exited:
	case <-time.After(10 * time.Second):
		t.Fatal("first server still running after the second started")
	}
	if got := execSQL(t, second.URL("postgres"), "SELECT 'ok'"); got != "ok" {
		t.Fatalf("second server answered %q", got)
	}
	stop(t, first) // already gone: must not fail
	stop(t, second)
}

func TestFixedPortInUse(t *testing.T) {
	requirePostgres(t)
	cfg := testConfig(t)
	s := start(t, cfg)
	cfg2 := testConfig(t)
	cfg2.Port = s.port
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if s2, err := Start(ctx, cfg2); err == nil {
		_ = s2.Stop(ctx)
		t.Fatal("second server on a taken port started")
	} else {
		t.Logf("expected error: %v", err)
	}
}

func TestCreateDatabaseRejectsBadNames(t *testing.T) {
	s := &Server{}
	for _, name := range []string{"", "Upper", "semi;colon", "dash-name", string(make([]byte, 64))} {
		if err := s.CreateDatabase(t.Context(), name); err == nil {
			t.Errorf("CreateDatabase(%q) accepted", name)
		}
	}
}

func TestFindPostgresBinError(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dir, err := FindPostgresBin()
	if err == nil {
		t.Logf("found %s via /usr/lib/postgresql", dir)
		return
	}
	if !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("error %v does not wrap ErrNotInstalled", err)
	}
}
