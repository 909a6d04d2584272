// Package sqlstoretest is the shared database harness for tests of SQL
// stores: every test gets its own fresh, empty database on one server per
// test binary.
//
// The server is the one named by COALITION_TEST_DATABASE_URL when that is
// set, else a throwaway local server started on first use with localpg
// (CockroachDB when a cockroach binary is on PATH, else PostgreSQL with
// durability off). Either way databases run at SERIALIZABLE, as design §8
// requires, so tests exercise the same retries as production.
//
// A package using it should stop the local server when its tests end:
//
//	func TestMain(m *testing.M) { os.Exit(sqlstoretest.Main(m)) }
package sqlstoretest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/settlement/sqlstore/localpg"
	"github.com/jackc/pgx/v5"
)

// EnvDatabaseURL names the variable that points tests at an existing server.
// Its URL must be able to create and drop databases.
const EnvDatabaseURL = "COALITION_TEST_DATABASE_URL"

const (
	startTimeout = 2 * time.Minute // includes initdb on a cold machine
	sqlTimeout   = 30 * time.Second
	maxNameLen   = 63 // PostgreSQL's identifier limit
)

// target is the server databases are created on. Immutable once built.
type target struct {
	adminURL  string // a database to connect to for CREATE/DROP DATABASE
	base      *url.URL
	cockroach bool
}

// The per-binary server, started lazily by the first NewDatabase so that
// packages whose database tests are all filtered out pay nothing.
var (
	mu     sync.Mutex
	tgt    *target
	tgtErr error // cached: one failed start is not retried by every test
	srv    *localpg.Server
	srvDir string
)

// NewDatabase returns the URL of a fresh, empty database for this test,
// dropped (best effort) at cleanup. Without a server it fails the test when
// CI is set and skips it otherwise.
func NewDatabase(t testing.TB) string {
	t.Helper()
	tg, err := getTarget()
	if errors.Is(err, localpg.ErrNotInstalled) {
		unavailable(t, err)
	}
	if err != nil {
		t.Fatalf("sqlstoretest: no test database server: %v", err)
	}
	name := databaseName(t.Name())
	if err := tg.create(name); err != nil {
		t.Fatalf("sqlstoretest: %v", err)
	}
	t.Cleanup(func() {
		if err := tg.drop(name); err != nil {
			t.Logf("sqlstoretest: drop database %s (ignored): %v", name, err)
		}
	})
	u := *tg.base
	u.Path = "/" + name
	return u.String()
}

// Main runs the tests and then stops the local server, if one was started,
// and removes its directory. Use it from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "sqlstoretest: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// unavailable skips locally, where missing PostgreSQL is a setup gap, but
// fails in CI, where a skip would hide that nothing was tested.
func unavailable(t testing.TB, err error) {
	t.Helper()
	msg := fmt.Sprintf("sqlstoretest: no test database: %v; run `make test` (it installs PostgreSQL) or set %s",
		err, EnvDatabaseURL)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set: database tests never skip there)", msg)
	}
	t.Skip(msg)
}

func getTarget() (*target, error) {
	mu.Lock()
	defer mu.Unlock()
	if tgt != nil || tgtErr != nil {
		return tgt, tgtErr
	}
	if raw := os.Getenv(EnvDatabaseURL); raw != "" {
		tgt, tgtErr = externalTarget(raw)
	} else {
		tgt, tgtErr = startLocal()
	}
	return tgt, tgtErr
}

func externalTarget(raw string) (*target, error) {
	base, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", EnvDatabaseURL, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", EnvDatabaseURL, err)
	}
	defer conn.Close(ctx)
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return nil, fmt.Errorf("query %s: %w", EnvDatabaseURL, err)
	}
	return &target{adminURL: raw, base: base, cockroach: strings.Contains(version, "CockroachDB")}, nil
}

// startLocal starts this binary's server. Called with mu held.
func startLocal() (*target, error) {
	dir, err := os.MkdirTemp("", "coalition-sqlstoretest-")
	if err != nil {
		return nil, err
	}
	// As root the server runs as an unprivileged user, which must be able to
	// reach its data directory; MkdirTemp makes 0700.
	if err := os.Chmod(dir, 0o755); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := localpg.Start(ctx, localpg.Config{
		Dir:             filepath.Join(dir, "data"),
		PreferCockroach: true,
		Logger:          slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	srv, srvDir = s, dir
	admin := "postgres"
	if s.Engine() == localpg.EngineCockroach {
		admin = "defaultdb"
	}
	base, err := url.Parse(s.URL(admin))
	if err != nil {
		return nil, err
	}
	return &target{adminURL: s.URL(admin), base: base, cockroach: s.Engine() == localpg.EngineCockroach}, nil
}

func shutdown() error {
	mu.Lock()
	defer mu.Unlock()
	var err error
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err = srv.Stop(ctx)
	}
	if srvDir != "" {
		err = errors.Join(err, os.RemoveAll(srvDir))
	}
	srv, srvDir, tgt, tgtErr = nil, "", nil, nil
	return err
}

func (tg *target) create(name string) error {
	stmts := []string{"CREATE DATABASE " + name}
	if !tg.cockroach {
		// A server from EnvDatabaseURL may default to READ COMMITTED; design §8
		// wants every test at SERIALIZABLE (CockroachDB's default).
		stmts = append(stmts, "ALTER DATABASE "+name+" SET default_transaction_isolation = 'serializable'")
	}
	return tg.exec(stmts...)
}

func (tg *target) drop(name string) error {
	if tg.cockroach {
		return tg.exec("DROP DATABASE IF EXISTS " + name + " CASCADE")
	}
	// FORCE: a test that leaked a connection must not make the drop fail.
	return tg.exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")
}

func (tg *target) exec(stmts ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, tg.adminURL)
	if err != nil {
		return fmt.Errorf("connect to test server: %w", err)
	}
	defer conn.Close(ctx)
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// databaseName turns a test name into a valid unquoted identifier: "t_", the
// name reduced to [a-z0-9_] (readable when debugging), and a random suffix so
// that reruns, -count=N and parallel binaries never collide.
func databaseName(testName string) string {
	var b strings.Builder
	sep := false // pending "_" for a run of other characters
	for _, r := range strings.ToLower(testName) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if sep && b.Len() > 0 {
				b.WriteByte('_')
			}
			b.WriteRune(r)
			sep = false
		} else {
			sep = true
		}
	}
	var random [4]byte
	_, _ = rand.Read(random[:]) // crypto/rand.Read never fails
	suffix := "_" + hex.EncodeToString(random[:])
	stem := b.String()
	if limit := maxNameLen - len("t_") - len(suffix); len(stem) > limit {
		stem = strings.TrimRight(stem[:limit], "_")
	}
	if stem == "" {
		return "t" + suffix
	}
	return "t_" + stem + suffix
}
