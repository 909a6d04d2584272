package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/ledgergen"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/localpg"
)

// The goals of issue 3: a settlement run takes at most settleRatioMax × PostgreSQL's own
// GROUP BY over the same entries, and awards keep at least awardRatioMin × their rate while it runs.
const (
	settleRatioMax = 2.0
	awardRatioMin  = 0.8
)

type benchSettlementOptions struct {
	dataDir        string
	keep           bool
	entries        int64
	partners       int
	members        int64
	workers        int
	clients        int
	awardSeconds   time.Duration
	settleWorkers  int
	settleDuty     float64
	rollupInterval time.Duration
}

func newBenchSettlementCmd(e *env) *cobra.Command {
	var o benchSettlementOptions
	cmd := &cobra.Command{
		Use:    "bench-settlement",
		Short:  "Benchmark a settlement run against PostgreSQL's own GROUP BY, and awards during it",
		Hidden: true,
		Long: `bench-settlement starts a throwaway PostgreSQL, generates --entries ledger entries across
--partners partners in SQL, times PostgreSQL's GROUP BY over the entries (best of two), the
roll-up of the generated ledger (which the gateway does every --rollup-interval as traffic
arrives), a settlement run over the period holding them, and awards at --clients clients through
the gateway over mTLS alone and while settlement re-runs the period back to back for as long. It exits non-zero when settlement takes
more than 2× the GROUP BY or awards fall below 0.8× their rate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runBenchSettlement(cmd.Context(), e, o) },
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", "", "database directory (default: a temporary one, deleted afterwards)")
	f.BoolVar(&o.keep, "keep", false, "keep the temporary data directory")
	f.Int64Var(&o.entries, "entries", 10_000_000, "ledger entries to generate")
	f.IntVar(&o.partners, "partners", 20, "partners to register")
	f.Int64Var(&o.members, "members", 250_000, "members to spread the generated ledger over")
	f.IntVar(&o.workers, "gen-workers", 2, "concurrent generator transactions")
	f.IntVar(&o.clients, "clients", 8, "concurrent award clients")
	f.DurationVar(&o.awardSeconds, "award-duration", 10*time.Second, "how long awards run alone")
	registerSettleWorkers(f, &o.settleWorkers, &o.settleDuty)
	f.DurationVar(&o.rollupInterval, "rollup-interval", 5*time.Second, "the gateway's --rollup-interval while awards run")
	return cmd
}

// benchFigures are what the benchmark measures.
type benchFigures struct {
	entries                   int64
	groupBy, rollup           time.Duration
	rolledUp                  int64         // transactions
	settle, rerun, during     time.Duration // rerun: mean of reruns back-to-back runs over during
	reruns                    int
	awardAlone, awardDuring   float64 // awards per second
	awardsAlone, awardsDuring int64
}

func runBenchSettlement(ctx context.Context, e *env, o benchSettlementOptions) error {
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dir, cleanup, err := benchDir(o)
	if err != nil {
		return err
	}
	defer cleanup()
	fmt.Fprintf(e.stdout, "bench-settlement: data in %s\n", dir)
	db, err := localpg.Start(ctx, localpg.Config{Dir: filepath.Join(dir, "db"), Durable: true, Logger: log})
	if err != nil {
		return fmt.Errorf("start database: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := db.Stop(sctx); err != nil {
			log.Error("stop database", "err", err)
		}
	}()
	if err := db.CreateDatabase(ctx, "coalition"); err != nil {
		return err
	}
	pool, err := sqlstore.Open(ctx, db.URL("coalition"), 32)
	if err != nil {
		return err
	}
	defer pool.Close()
	fig, err := benchSettlement(ctx, e.stdout, o, dir, pool, log)
	if err != nil {
		return err
	}
	return reportBench(ctx, e.stdout, pool, o, fig)
}

func benchDir(o benchSettlementOptions) (string, func(), error) {
	if o.dataDir != "" {
		dir, err := filepath.Abs(o.dataDir)
		return dir, func() {}, err
	}
	dir, err := os.MkdirTemp("", "coalition-bench-settlement-*")
	if err != nil {
		return "", nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // the database runs unprivileged when we are root
		return "", nil, err
	}
	if o.keep {
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

func benchSettlement(ctx context.Context, w io.Writer, o benchSettlementOptions, dir string, pool *pgxpool.Pool, log *slog.Logger) (benchFigures, error) {
	var fig benchFigures
	if _, err := sqlstore.Migrate(ctx, pool, log); err != nil {
		return fig, err
	}
	// Bulk generation writes gigabytes of WAL: checkpoint by time, not every 1 GB.
	if _, err := pool.Exec(ctx, `ALTER SYSTEM SET max_wal_size = '16GB'`); err != nil {
		return fig, err
	}
	if _, err := pool.Exec(ctx, `SELECT pg_reload_conf()`); err != nil {
		return fig, err
	}
	store, err := sqlstore.New(sqlstore.Config{Pool: pool, Logger: log, SettleParallelWorkers: o.settleWorkers, SettleDutyCycle: o.settleDuty})
	if err != nil {
		return fig, err
	}
	now := time.Now().UTC().Truncate(time.Second)
	gen := ledgergen.Config{Pool: pool, Members: o.members, Entries: o.entries, Workers: o.workers,
		From: now.Add(-30 * 24 * time.Hour), To: now.Add(-time.Hour), V2At: now.Add(-15 * 24 * time.Hour)}
	if gen.PartnerIDs, err = benchPartners(ctx, store, o.partners, gen.From.Add(-time.Hour), gen.V2At); err != nil {
		return fig, err
	}
	if fig.entries, err = generateLedger(ctx, w, gen); err != nil {
		return fig, err
	}
	if fig.groupBy, err = timeGroupBy(ctx, w, pool); err != nil {
		return fig, err
	}
	// The gateway rolls up the ledger every --rollup-interval as traffic arrives; the generated
	// ledger arrived all at once, so it is rolled up here, once, and timed on its own.
	fmt.Fprintln(w, "rolling up the generated ledger (the gateway does this every --rollup-interval as traffic arrives) ...")
	start := time.Now()
	rolled, err := store.RollUp(ctx, time.Now())
	if err != nil {
		return fig, err
	}
	fig.rollup, fig.rolledUp = time.Since(start), rolled.Transactions
	fmt.Fprintf(w, "  rolled up %d epochs, %d transactions in %.2fs\n", rolled.Rolled, rolled.Transactions, fig.rollup.Seconds())
	cutoff := now.Add(-30 * time.Minute)
	settle := func(ctx context.Context, progress func(string)) (settlement.RunRecord, time.Duration, error) {
		start := time.Now()
		rec, err := store.Settle(ctx, settlement.SettleConfig{Cutoff: cutoff, Now: time.Now(), SafetyLag: time.Minute,
			Holder: "bench-settlement", Progress: progress})
		if err == nil && rec.Status != "published" {
			err = fmt.Errorf("settlement run %d %s: checks %+v", rec.ID, rec.Status, rec.Checks)
		}
		return rec, time.Since(start), err
	}
	fmt.Fprintln(w, "settlement run over the generated period:")
	started := time.Now()
	rec, took, err := settle(ctx, func(s string) { fmt.Fprintf(w, "  %6.2fs %s\n", time.Since(started).Seconds(), s) })
	if err != nil {
		return fig, err
	}
	fig.settle = took
	fmt.Fprintf(w, "  run %d: %d transactions, %d statement lines' partners, %.2fs\n", rec.ID, rec.Transactions, len(rec.Result.Lines), took.Seconds())
	return fig, benchAwards(ctx, w, o, dir, pool, gen.PartnerIDs, log, &fig, func(ctx context.Context) (time.Duration, error) {
		_, took, err := settle(ctx, nil)
		return took, err
	})
}

// benchPartners registers n partners with terms version 1 from v1At and, for every other one,
// version 2 from v2At.
func benchPartners(ctx context.Context, store *sqlstore.Store, n int, v1At, v2At time.Time) ([]string, error) {
	ids := make([]string, n)
	for i := range n {
		ids[i] = fmt.Sprintf("bench-p%02d", i+1)
		if _, err := store.EnsurePartner(ctx, settlement.Partner{ID: ids[i], Name: ids[i]}); err != nil {
			return nil, err
		}
		versions := []time.Time{v1At}
		if i%2 == 0 {
			versions = append(versions, v2At)
		}
		for v, at := range versions {
			t := settlement.PriceTerms{PartnerID: ids[i], EffectiveAt: at, Currency: "EUR"}
			var err error
			if t.IssuePrice, err = settlement.ParseDecimal("issue_price", fmt.Sprintf("0.01%02d", i+v)); err != nil {
				return nil, err
			}
			if t.ReimbursementRate, err = settlement.ParseDecimal("reimbursement_rate", fmt.Sprintf("0.008%d", (i+v)%10)); err != nil {
				return nil, err
			}
			if _, err := store.SetPriceTerms(ctx, t, v1At); err != nil {
				return nil, fmt.Errorf("price terms of %s: %w", ids[i], err)
			}
		}
	}
	return ids, nil
}

func generateLedger(ctx context.Context, w io.Writer, gen ledgergen.Config) (int64, error) {
	fmt.Fprintf(w, "generating %d entries across %d partners and %d members in SQL ...\n", gen.Entries, len(gen.PartnerIDs), gen.Members)
	start := time.Now()
	last := time.Now()
	gen.Progress = func(done, total int64) {
		if time.Since(last) >= 10*time.Second || done == total {
			last = time.Now()
			el := time.Since(start).Seconds()
			fmt.Fprintf(w, "  %5.1f%%  %10d entries  %6.0fs  %.0f entries/s\n", 100*float64(done)/float64(total), done, el, float64(done)/el)
		}
	}
	st, err := ledgergen.Generate(ctx, gen)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(w, "  wrote %d transactions, %d entries, %d lots, %d lineage rows, %d reversals (%d lineage returns), %d members in %.0fs (with VACUUM ANALYZE)\n",
		st.Transactions, st.Entries, st.Lots, st.Consumptions, st.Reversals, st.Returns, st.Members, time.Since(start).Seconds())
	return st.Entries, nil
}

// groupBySQL is the baseline: PostgreSQL's own aggregation of every entry.
const groupBySQL = `SELECT account, sum(amount) FROM entries GROUP BY account`

// timeGroupBy runs the baseline twice, reading every row, and returns the better time.
func timeGroupBy(ctx context.Context, w io.Writer, pool *pgxpool.Pool) (time.Duration, error) {
	best := time.Duration(1<<63 - 1)
	for i := range 2 {
		start := time.Now()
		rows, err := pool.Query(ctx, groupBySQL)
		if err != nil {
			return 0, fmt.Errorf("baseline: %w", err)
		}
		n := 0
		for rows.Next() {
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, fmt.Errorf("baseline: %w", err)
		}
		took := time.Since(start)
		fmt.Fprintf(w, "baseline %d: %s -> %d accounts in %.2fs\n", i+1, groupBySQL, n, took.Seconds())
		best = min(best, took)
	}
	return best, nil
}

func reportBench(ctx context.Context, w io.Writer, pool *pgxpool.Pool, o benchSettlementOptions, fig benchFigures) error {
	var version string
	if err := pool.QueryRow(ctx, `SHOW server_version`).Scan(&version); err != nil {
		return err
	}
	settleRatio := fig.settle.Seconds() / fig.groupBy.Seconds()
	awardRatio := fig.awardDuring / fig.awardAlone
	fmt.Fprintf(w, "\nmachine: %d CPUs (nproc), %s memory, PostgreSQL %s, %s/%s\n", runtime.NumCPU(), memTotal(), version, runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "awards: %d clients through the gateway (in-process) over mTLS\n\n", o.clients)
	fmt.Fprintln(w, "| measure | value |")
	fmt.Fprintln(w, "| --- | --- |")
	fmt.Fprintf(w, "| entries | %d |\n", fig.entries)
	fmt.Fprintf(w, "| baseline GROUP BY (best of 2) | %.2f s (%.1fM entries/s) |\n", fig.groupBy.Seconds(), float64(fig.entries)/fig.groupBy.Seconds()/1e6)
	fmt.Fprintf(w, "| roll-up of the generated ledger (once, before the run) | %.2f s (%d transactions) |\n", fig.rollup.Seconds(), fig.rolledUp)
	fmt.Fprintf(w, "| settlement run | %.2f s (%.1fM entries/s) |\n", fig.settle.Seconds(), float64(fig.entries)/fig.settle.Seconds()/1e6)
	fmt.Fprintf(w, "| settlement / baseline | %.2f (goal ≤ %.1f) |\n", settleRatio, settleRatioMax)
	fmt.Fprintf(w, "| awards alone | %.0f /s (%d in %s) |\n", fig.awardAlone, fig.awardsAlone, o.awardSeconds)
	fmt.Fprintf(w, "| awards during settlement re-runs | %.0f /s (%d in %.2f s: %d back-to-back runs of %.2f s) |\n",
		fig.awardDuring, fig.awardsDuring, fig.during.Seconds(), fig.reruns, fig.rerun.Seconds())
	fmt.Fprintf(w, "| during / alone | %.2f (goal ≥ %.1f) |\n", awardRatio, awardRatioMin)
	var missed []string
	if settleRatio > settleRatioMax {
		missed = append(missed, fmt.Sprintf("settlement took %.2f× the GROUP BY (goal ≤ %.1f×)", settleRatio, settleRatioMax))
	}
	if awardRatio < awardRatioMin {
		missed = append(missed, fmt.Sprintf("awards ran at %.2f× their rate during settlement (goal ≥ %.1f×)", awardRatio, awardRatioMin))
	}
	if len(missed) > 0 {
		return errors.New("bench-settlement: goal missed: " + strings.Join(missed, "; "))
	}
	fmt.Fprintln(w, "\nbench-settlement: both goals met")
	return nil
}

// memTotal reads MemTotal from /proc/meminfo ("unknown" elsewhere).
func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			var kb int64
			if _, err := fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), &kb); err == nil {
				return fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
			}
		}
	}
	return "unknown"
}
