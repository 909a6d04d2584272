package ledgergen_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/ledgergen"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/sqlstoretest"
)

func TestMain(m *testing.M) { os.Exit(sqlstoretest.Main(m)) }

// TestGeneratedLedgerIsSound generates a small ledger with the benchmark's code and checks
// that it keeps every ledger invariant and that a settlement run over it passes its checks.
func TestGeneratedLedgerIsSound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, err := sqlstore.Open(ctx, sqlstoretest.NewDatabase(t), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	quiet := slog.New(slog.DiscardHandler)
	if _, err := sqlstore.Migrate(ctx, pool, quiet); err != nil {
		t.Fatal(err)
	}
	store, err := sqlstore.New(sqlstore.Config{Pool: pool, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	from := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	cfg := ledgergen.Config{Pool: pool, V2At: from.Add(12 * time.Hour), Members: 37, Entries: 6_000,
		From: from, To: from.Add(24 * time.Hour), BatchUnits: 97}
	for i := range 5 {
		id := fmt.Sprintf("gen-%02d", i)
		cfg.PartnerIDs = append(cfg.PartnerIDs, id)
		if _, err := store.EnsurePartner(ctx, settlement.Partner{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
		setTerms(t, store, id, "0.0100", "0.0080", from.Add(-time.Hour), from.Add(-time.Hour))
		if i%2 == 0 {
			setTerms(t, store, id, "0.0110", "0.0085", cfg.V2At, from.Add(-time.Hour))
		}
	}
	st, err := ledgergen.Generate(ctx, cfg)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	if st.Entries < cfg.Entries || st.Reversals == 0 || st.Returns == 0 || st.Members != cfg.Members {
		t.Errorf("Generate wrote %+v; want at least %d entries, reversals with lineage returned, %d members", st, cfg.Entries, cfg.Members)
	}
	violations, err := store.Verify(ctx)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for _, v := range violations {
		t.Errorf("violation: %s: %s", v.Check, v.Detail)
	}
	rec, err := store.Settle(ctx, settlement.SettleConfig{Cutoff: cfg.To, Now: cfg.To.Add(time.Hour), SafetyLag: time.Minute, Holder: t.Name()})
	if err != nil {
		t.Fatalf("Settle: %v", err)
	}
	if rec.Status != "published" || rec.Transactions != st.Transactions || rec.Late != 0 {
		t.Errorf("run %s over %d transactions (%d late), want published over %d (0 late); checks %+v",
			rec.Status, rec.Transactions, rec.Late, st.Transactions, rec.Checks)
	}
	versions := map[int64]bool{}
	for _, lines := range rec.Result.Lines {
		for _, l := range lines {
			versions[l.Version] = true
		}
	}
	if !versions[1] || !versions[2] {
		t.Errorf("statement lines price versions %v, want both 1 and 2", versions)
	}
	rerunInParallel(ctx, t, pool, cfg, rec)
}

// rerunInParallel re-runs the period with parallel plans made free (so PostgreSQL picks them
// even on this small ledger) and checks that parallel and single-backend aggregation price
// the period identically, and that SettleParallelWorkers decides which one runs.
func rerunInParallel(ctx context.Context, t *testing.T, pool *pgxpool.Pool, cfg ledgergen.Config, first settlement.RunRecord) {
	t.Helper()
	for _, set := range []string{"parallel_setup_cost = 0", "parallel_tuple_cost = 0", "min_parallel_table_scan_size = 0", "max_parallel_workers_per_gather = 2"} {
		if _, err := pool.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{pool.Config().ConnConfig.Database}.Sanitize()+" SET "+set); err != nil {
			t.Fatal(err)
		}
	}
	parallelPool, err := sqlstore.Open(ctx, pool.Config().ConnString(), 4) // new sessions: the settings apply
	if err != nil {
		t.Fatal(err)
	}
	defer parallelPool.Close()
	rows, err := parallelPool.Query(ctx, `EXPLAIN (FORMAT TEXT) SELECT account, sum(amount) FROM entries GROUP BY account`)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(plan, "\n"), "Gather") {
		t.Fatalf("plan with free parallelism has no Gather:\n%s", strings.Join(plan, "\n"))
	}
	for _, workers := range []int{sqlstore.SettleParallelWorkersDatabase, 0} {
		// The single-backend run is also paced (SettleDutyCycle), as `coalition serve` runs it.
		store, err := sqlstore.New(sqlstore.Config{Pool: parallelPool, Logger: slog.New(slog.DiscardHandler), SettleParallelWorkers: workers,
			SettleDutyCycle: map[bool]float64{true: 0.5}[workers == 0]})
		if err != nil {
			t.Fatal(err)
		}
		rec, err := store.Settle(ctx, settlement.SettleConfig{Cutoff: cfg.To, Now: cfg.To.Add(time.Hour), SafetyLag: time.Minute, Holder: t.Name()})
		if err != nil {
			t.Fatalf("Settle with %d parallel workers: %v", workers, err)
		}
		if rec.Status != "published" || rec.Period != first.Period || rec.Transactions != first.Transactions ||
			render(rec) != render(first) {
			t.Errorf("re-run with %d parallel workers: %s, period %d, %d transactions; lines or matrix differ from run %d",
				workers, rec.Status, rec.Period, rec.Transactions, first.ID)
		}
	}
	for _, bad := range []int{-2, 65} {
		if _, err := sqlstore.New(sqlstore.Config{Pool: pool, SettleParallelWorkers: bad}); err == nil || !strings.Contains(err.Error(), "parallel workers") {
			t.Errorf("SettleParallelWorkers %d: err %v, want a rejection naming it", bad, err)
		}
	}
	for _, bad := range []float64{-0.1, 1.5, math.NaN()} {
		if _, err := sqlstore.New(sqlstore.Config{Pool: pool, SettleDutyCycle: bad}); err == nil || !strings.Contains(err.Error(), "duty cycle") {
			t.Errorf("SettleDutyCycle %v: err %v, want a rejection naming it", bad, err)
		}
	}
}

func setTerms(t *testing.T, store *sqlstore.Store, partner, issue, reimb string, effective, now time.Time) {
	t.Helper()
	terms := settlement.PriceTerms{PartnerID: partner, EffectiveAt: effective, Currency: "EUR"}
	for _, f := range []struct {
		d *apd.Decimal
		s string
	}{{&terms.IssuePrice, issue}, {&terms.ReimbursementRate, reimb}} {
		if _, _, err := f.d.SetString(f.s); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.SetPriceTerms(context.Background(), terms, now); err != nil {
		t.Fatalf("SetPriceTerms %s: %v", partner, err)
	}
}

// render prints a run's statement lines and matrix, amounts as decimals.
func render(rec settlement.RunRecord) string {
	var b strings.Builder
	partners := slices.Sorted(maps.Keys(rec.Result.Lines))
	for _, p := range partners {
		for _, l := range rec.Result.Lines[p] {
			fmt.Fprintf(&b, "%s %s %s v%d %d × %s = %s late=%t txns=%d\n", p, l.Kind, l.Counterparty, l.Version, l.Points, l.Rate.Text('f'), l.Amount.Text('f'), l.Late, l.Txns)
		}
	}
	for _, c := range rec.Result.Matrix {
		fmt.Fprintf(&b, "%s→%s %d\n", c.Issuer, c.Redeemer, c.Points)
	}
	return b.String()
}
