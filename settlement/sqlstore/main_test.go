package sqlstore_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/sqlstoretest"
)

func TestMain(m *testing.M) { os.Exit(sqlstoretest.Main(m)) }

// The partners of the walk-through (DESIGN.md's demo coalition).
const (
	acme = "acme-air"
	bean = "bean-coffee"
)

// t0 is where every test clock starts: whole seconds, so nothing is lost to the database's
// microsecond timestamps.
var t0 = time.Date(2030, 3, 1, 12, 0, 0, 0, time.UTC)

// quiet discards the logs of the code under test; failures speak through t.
var quiet = slog.New(slog.DiscardHandler)

// clock is the injected time source; tests move it instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is one test's ledger on its own fresh, migrated database.
type env struct {
	url    string
	pool   *pgxpool.Pool
	store  *sqlstore.Store
	ledger *settlement.Ledger
	clock  *clock
}

// envConfig tunes newEnv; zero values mean defaults.
type envConfig struct {
	maxConns    int32 // default 8
	lotLifetime time.Duration
	runner      sqlstore.RunnerConfig
	groupCommit sqlstore.GroupCommitConfig
	skipVerify  bool // the test breaks the books on purpose
}

// newEnv builds the ledger the way `coalition` does: Open, Migrate, New, settlement.New. At
// cleanup it checks every ledger invariant, so each test also proves it left the books sound.
func newEnv(t *testing.T, cfg envConfig) *env {
	t.Helper()
	if cfg.maxConns == 0 {
		cfg.maxConns = 8
	}
	url := sqlstoretest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := sqlstore.Open(ctx, url, cfg.maxConns)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(pool.Close)
	if _, err := sqlstore.Migrate(ctx, pool, quiet); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	e := &env{url: url, pool: pool, clock: &clock{now: t0}}
	e.store = newGroupStore(t, pool, cfg.lotLifetime, cfg.runner, cfg.groupCommit)
	e.ledger = e.newLedger(t, e.store)
	if !cfg.skipVerify {
		t.Cleanup(func() { e.verify(t) })
	}
	return e
}

func newStore(t *testing.T, pool *pgxpool.Pool, lotLifetime time.Duration, runner sqlstore.RunnerConfig) *sqlstore.Store {
	t.Helper()
	return newGroupStore(t, pool, lotLifetime, runner, sqlstore.GroupCommitConfig{})
}

func newGroupStore(t *testing.T, pool *pgxpool.Pool, lotLifetime time.Duration, runner sqlstore.RunnerConfig, gc sqlstore.GroupCommitConfig) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.New(sqlstore.Config{Pool: pool, LotLifetime: lotLifetime, Runner: runner, GroupCommit: gc, Logger: quiet})
	if err != nil {
		t.Fatalf("sqlstore.New: %v", err)
	}
	return s
}

// newLedger returns a Ledger on store with e's clock.
func (e *env) newLedger(t *testing.T, store settlement.Store) *settlement.Ledger {
	t.Helper()
	l, err := settlement.New(settlement.Config{Store: store, Now: e.clock.Now, Logger: quiet})
	if err != nil {
		t.Fatalf("settlement.New: %v", err)
	}
	return l
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func (e *env) apply(t *testing.T, cmd settlement.Command) (settlement.Outcome, error) {
	t.Helper()
	return e.ledger.Apply(ctxFor(t), cmd)
}

// must applies cmd and fails the test on any error.
func (e *env) must(t *testing.T, cmd settlement.Command) settlement.Outcome {
	t.Helper()
	out, err := e.apply(t, cmd)
	if err != nil {
		t.Fatalf("%s %s/%s: %v", cmd.Op, cmd.PartnerID, cmd.IdempotencyKey, err)
	}
	if out.Replayed {
		t.Fatalf("%s %s/%s: got a replay, want a first application", cmd.Op, cmd.PartnerID, cmd.IdempotencyKey)
	}
	return out
}

// fails applies cmd and checks that it fails with want.
func (e *env) fails(t *testing.T, cmd settlement.Command, want error) error {
	t.Helper()
	out, err := e.apply(t, cmd)
	if !errors.Is(err, want) {
		t.Fatalf("%s %s/%s: got (%+v, %v), want %v", cmd.Op, cmd.PartnerID, cmd.IdempotencyKey, out.Transaction, err, want)
	}
	return err
}

func award(partner, member, key string, points int64) settlement.Command {
	return settlement.Command{Op: settlement.OpAward, PartnerID: partner, IdempotencyKey: key,
		MemberID: member, Points: points, Reference: "award " + key}
}

func redeem(partner, member, key string, points int64) settlement.Command {
	return settlement.Command{Op: settlement.OpRedeem, PartnerID: partner, IdempotencyKey: key,
		MemberID: member, Points: points, Reference: "redeem " + key}
}

func authorize(partner, member, key string, points int64) settlement.Command {
	return settlement.Command{Op: settlement.OpAuthorize, PartnerID: partner, IdempotencyKey: key,
		MemberID: member, Points: points, Reference: "authorize " + key}
}

func capture(partner, key, holdID string, points int64) settlement.Command {
	return settlement.Command{Op: settlement.OpCapture, PartnerID: partner, IdempotencyKey: key,
		HoldID: holdID, Points: points}
}

func void(partner, key, holdID string) settlement.Command {
	return settlement.Command{Op: settlement.OpVoid, PartnerID: partner, IdempotencyKey: key, HoldID: holdID}
}

func reverse(partner, key, txnID string, points int64) settlement.Command {
	return settlement.Command{Op: settlement.OpReverse, PartnerID: partner, IdempotencyKey: key,
		TransactionID: txnID, Points: points, Reason: "refund"}
}

// wantBalance checks a member's balance as stored.
func (e *env) wantBalance(t *testing.T, member string, posted, held int64) {
	t.Helper()
	b, err := e.ledger.Balance(ctxFor(t), member)
	if err != nil {
		t.Fatalf("Balance(%s): %v", member, err)
	}
	if b.Posted != posted || b.Held != held {
		t.Errorf("Balance(%s): got posted %d held %d (available %d), want posted %d held %d (available %d)",
			member, b.Posted, b.Held, b.Available(), posted, held, posted-held)
	}
}

// wantOutcomeBalance checks the balance an outcome reports.
func wantOutcomeBalance(t *testing.T, out settlement.Outcome, posted, held int64) {
	t.Helper()
	if b := out.Balance; b.Posted != posted || b.Held != held {
		t.Errorf("%s outcome balance: got posted %d held %d, want posted %d held %d",
			out.Transaction.Kind, b.Posted, b.Held, posted, held)
	}
}

// verify fails the test on any broken ledger invariant.
func (e *env) verify(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	violations, err := e.store.Verify(ctx)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for _, v := range violations {
		t.Errorf("Verify: %s: %s", v.Check, v.Detail)
	}
}

// queryInt runs a query returning one integer.
func (e *env) queryInt(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := e.pool.QueryRow(ctxFor(t), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// rowCounts counts the rows of the tables an effect writes.
func (e *env) rowCounts(t *testing.T) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, table := range []string{"transactions", "entries", "lots", "lot_consumptions", "holds", "members"} {
		out[table] = e.queryInt(t, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize())
	}
	return out
}

type lotRow struct {
	issuer                     string
	points, reversed, remained int64
	expiresAt                  time.Time
}

func (e *env) lot(t *testing.T, id string) lotRow {
	t.Helper()
	var l lotRow
	err := e.pool.QueryRow(ctxFor(t), `SELECT issuer, points, reversed, remaining, expires_at FROM lots WHERE id = $1`, id).
		Scan(&l.issuer, &l.points, &l.reversed, &l.remained, &l.expiresAt)
	if err != nil {
		t.Fatalf("read lot %s: %v", id, err)
	}
	return l
}

// consumption is one lineage row of a redemption or capture.
type consumption struct {
	LotID    string
	Issuer   string
	Points   int64
	Returned int64
}

func (e *env) lineage(t *testing.T, txnID string) []consumption {
	t.Helper()
	rows, err := e.pool.Query(ctxFor(t), `SELECT lot_id, issuer, points, returned FROM lot_consumptions WHERE txn_id = $1 ORDER BY seq`, txnID)
	if err != nil {
		t.Fatalf("read lineage: %v", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (consumption, error) {
		var c consumption
		return c, r.Scan(&c.LotID, &c.Issuer, &c.Points, &c.Returned)
	})
	if err != nil {
		t.Fatalf("read lineage: %v", err)
	}
	return out
}

// holdStatus reads a hold's stored status and captured points.
func (e *env) holdStatus(t *testing.T, id string) (settlement.HoldStatus, int64) {
	t.Helper()
	var status string
	var captured int64
	err := e.pool.QueryRow(ctxFor(t), `SELECT status, captured_points FROM holds WHERE id = $1`, id).Scan(&status, &captured)
	if err != nil {
		t.Fatalf("read hold %s: %v", id, err)
	}
	return settlement.HoldStatus(status), captured
}
