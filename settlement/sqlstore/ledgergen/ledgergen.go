package ledgergen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// Limits and defaults.
const (
	DefaultBatchUnits = 25_000 // units per transaction: about 150,000 entries
	DefaultWorkers    = 2
	maxWorkers        = 16
	// reversalEvery: every reversalEvery-th unit has a fourth transaction, a reversal —
	// alternately of its second award (partly) and of its redemption (fully).
	reversalEvery = 250
	// LotLifetime is the lifetime of generated lots (sqlstore.DefaultLotLifetime).
	lotLifetimeDays = 730
)

// Config says what to generate. A unit is one member's award at one partner, award at a
// second, and redemption at a third drawing on both lots (lineage to real lots); every
// reversalEvery-th unit adds a reversal. Transactions have two entries each.
type Config struct {
	Pool *pgxpool.Pool // required; a migrated database
	// PartnerIDs are registered partners with price terms version 1 in force from before From
	// and, for those at even indexes, version 2 from V2At. At least 3.
	PartnerIDs []string
	V2At       time.Time
	Members    int64 // distinct members, "bench-m0000000" ...; required
	Entries    int64 // at least this many entries are generated; required
	// From and To bound created_at; every transaction is stamped with period Period.
	From, To time.Time
	Period   int64 // default 1
	Seed     string
	// BatchUnits units are written per database transaction, Workers transactions at a time.
	BatchUnits int64
	Workers    int
	// Progress, if set, is called after each batch (from any worker) with entries written.
	Progress func(entriesDone, entriesTotal int64)
}

// Stats counts what Generate wrote.
type Stats struct {
	Units, Transactions, Entries, Lots, Consumptions, Returns, Reversals, Members int64
}

// plan returns the number of units and what they hold.
func plan(entries int64) Stats {
	// Per unit: 3 transactions, plus 1 every reversalEvery units; 2 entries each.
	units := entries * reversalEvery / (2 * (3*reversalEvery + 1))
	for 2*(3*units+reversalsIn(units)) < entries {
		units++
	}
	rev := reversalsIn(units)
	// Consumptions, Returns and Members are counted once written.
	return Stats{Units: units, Transactions: 3*units + rev, Entries: 2 * (3*units + rev), Lots: 2 * units, Reversals: rev}
}

func reversalsIn(units int64) int64 { return (units + reversalEvery - 1) / reversalEvery }

// Generate writes the ledger and the members' balances, then VACUUM ANALYZEs the tables like
// autovacuum would on a live system. It is not idempotent: run it once on a fresh database.
func Generate(ctx context.Context, cfg Config) (Stats, error) {
	if err := check(&cfg); err != nil {
		return Stats{}, err
	}
	runner, err := sqlstore.NewRunner(cfg.Pool, sqlstore.RunnerConfig{})
	if err != nil {
		return Stats{}, err
	}
	st := plan(cfg.Entries)
	span := cfg.To.Sub(cfg.From).Microseconds()
	stepMicros := span / (4 * st.Units) // each unit spans 4 steps: award, award, redeem, reversal
	if stepMicros < 1 {
		return st, fmt.Errorf("ledgergen: %s is too short for %d units", cfg.To.Sub(cfg.From), st.Units)
	}
	args := func(u0, u1 int64) []any {
		return []any{u0, u1, cfg.Seed, cfg.From, stepMicros, cfg.Members, cfg.PartnerIDs, cfg.V2At, cfg.Period}
	}
	var done atomic.Int64
	batches := (st.Units + cfg.BatchUnits - 1) / cfg.BatchUnits
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, cfg.Workers)
	for w := range cfg.Workers {
		wg.Go(func() {
			for b := next.Add(1) - 1; b < batches && ctx.Err() == nil; b = next.Add(1) - 1 {
				u0, u1 := b*cfg.BatchUnits, min((b+1)*cfg.BatchUnits, st.Units)
				if err := writeBatch(ctx, runner, args(u0, u1)); err != nil {
					errs[w] = fmt.Errorf("ledgergen: units [%d, %d): %w", u0, u1, err)
					return
				}
				n := done.Add(entriesOf(u0, u1))
				if cfg.Progress != nil {
					cfg.Progress(n, st.Entries)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return st, err
	}
	return finish(ctx, cfg.Pool, runner, st)
}

func check(cfg *Config) error {
	switch {
	case cfg.Pool == nil:
		return errors.New("ledgergen: Config.Pool is required")
	case len(cfg.PartnerIDs) < 3:
		return errors.New("ledgergen: at least 3 partners are required")
	case cfg.Members <= 0 || cfg.Entries <= 0:
		return errors.New("ledgergen: Members and Entries must be positive")
	case !cfg.To.After(cfg.From):
		return errors.New("ledgergen: To must be after From")
	case cfg.Workers > maxWorkers:
		return fmt.Errorf("ledgergen: at most %d workers", maxWorkers)
	}
	if cfg.Period == 0 {
		cfg.Period = 1
	}
	if cfg.BatchUnits <= 0 {
		cfg.BatchUnits = DefaultBatchUnits
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Seed == "" {
		cfg.Seed = "bench"
	}
	return nil
}

// entriesOf counts the entries of units [u0, u1).
func entriesOf(u0, u1 int64) int64 {
	return 2 * (3*(u1-u0) + reversalsIn(u1) - reversalsIn(u0))
}

func writeBatch(ctx context.Context, runner *sqlstore.Runner, args []any) error {
	return runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		for _, q := range batchSQL {
			if _, err := tx.Exec(ctx, q.sql, args...); err != nil {
				return fmt.Errorf("%s: %w", q.what, err)
			}
		}
		return nil
	})
}

// finish derives the members' balances from their lots, counts lineage and refreshes the
// planner's statistics.
func finish(ctx context.Context, pool *pgxpool.Pool, runner *sqlstore.Runner, st Stats) (Stats, error) {
	err := runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, membersSQL)
		if err != nil {
			return fmt.Errorf("members: %w", err)
		}
		st.Members = tag.RowsAffected()
		return tx.QueryRow(ctx, `SELECT (SELECT count(*) FROM lot_consumptions), (SELECT count(*) FROM lot_returns)`).
			Scan(&st.Consumptions, &st.Returns)
	})
	if err != nil {
		return st, fmt.Errorf("ledgergen: %w", err)
	}
	for _, table := range []string{"transactions", "entries", "lots", "lot_consumptions", "lot_returns", "members"} {
		if _, err := pool.Exec(ctx, "VACUUM ANALYZE "+table); err != nil {
			return st, fmt.Errorf("ledgergen: vacuum %s: %w", table, err)
		}
	}
	return st, nil
}

// Parameters of every batch statement: $1, $2 the units [u0, u1); $3 seed; $4 From; $5 step
// (µs); $6 members; $7 partner ids; $8 V2At; $9 period.
const unitsCTE = `WITH u AS MATERIALIZED (
	SELECT g.n, g.m, g.i1, g.i2, g.ir, p.pa1, p.pa2, p.pr, g.x, g.y, z.z,
		least(g.x, z.z) AS take1, z.z - least(g.x, z.z) AS take2,
		(g.y - (z.z - least(g.x, z.z))) / 2 AS ra,
		g.n % 250 = 0 AND (g.n / 250) % 2 = 0 AS rev_award,
		g.n % 250 = 0 AND (g.n / 250) % 2 = 1 AS rev_redeem,
		$4::TIMESTAMPTZ AS from_at, $5::INT8 AS step, $8::TIMESTAMPTZ AS v2_at, $9::INT8 AS period -- types every parameter
	FROM (
		SELECT n, 'bench-m' || lpad((n % $6::INT8)::TEXT, 7, '0') AS m,
			n % cardinality($7::TEXT[]) AS i1, (n * 3 + 1) % cardinality($7::TEXT[]) AS i2,
			(n * 7 + 5) % cardinality($7::TEXT[]) AS ir,
			100 + n * 37 % 900 AS x, 50 + n * 53 % 450 AS y
		FROM generate_series($1::INT8, $2::INT8 - 1) AS n
	) g,
	LATERAL (SELECT 1 + g.n * 97 % (g.x + g.y / 2) AS z) z,
	LATERAL (SELECT ($7::TEXT[])[1 + g.i1] AS pa1, ($7::TEXT[])[1 + g.i2] AS pa2, ($7::TEXT[])[1 + g.ir] AS pr) p
)
`

// id is the uuid of unit u's k-th transaction (k = 0, 1: awards and their lots; 2: the
// redemption; 3: the reversal): a prefix from the seed, then the position, time-ordered like
// UUIDv7 so that a batch appends to the primary keys (the ledger's are random v4; nothing in
// settlement depends on id order).
func id(k string) string {
	return `(left(md5($3::TEXT), 8) || lpad(to_hex(4 * u.n + (` + k + `)), 24, '0'))::UUID`
}

// at is the created_at of unit u's k-th transaction.
func at(k string) string {
	return `($4::TIMESTAMPTZ + (4 * u.n + (` + k + `)) * $5::INT8 * INTERVAL '1 microsecond')`
}

// version is the price version of partner index i at the k-th transaction's time.
func version(i, k string) string {
	return `(CASE WHEN (` + i + `) % 2 = 0 AND ` + at(k) + ` >= $8::TIMESTAMPTZ THEN 2 ELSE 1 END)::INT8`
}

const reversalUnit = `(r.k < 3 OR u.rev_award OR u.rev_redeem)`

var batchSQL = []struct{ what, sql string }{
	{"transactions", unitsCTE + `INSERT INTO transactions (id, partner_id, member_id, kind, points, reversed_points, reference,
		reverses_id, idempotency_key, price_version, occurred_at, created_at, period)
	SELECT ` + id("r.k") + `, r.partner, u.m, r.kind, r.points, r.reversed, 'bench-' || u.n || '-' || r.k,
		r.reverses, 'bench-' || u.n || '-' || r.k, ` + version("r.i", "r.k") + `, ` + at("r.k") + `, ` + at("r.k") + `, $9::INT8
	FROM u, LATERAL (VALUES
		(0, u.pa1, u.i1, 'award', u.x, 0, NULL::UUID),
		(1, u.pa2, u.i2, 'award', u.y, CASE WHEN u.rev_award THEN u.ra ELSE 0 END, NULL::UUID),
		(2, u.pr, u.ir, 'redeem', u.z, CASE WHEN u.rev_redeem THEN u.z ELSE 0 END, NULL::UUID),
		(3, CASE WHEN u.rev_award THEN u.pa2 ELSE u.pr END, CASE WHEN u.rev_award THEN u.i2 ELSE u.ir END, 'reversal',
			CASE WHEN u.rev_award THEN u.ra ELSE u.z END, 0, ` + id("CASE WHEN u.rev_award THEN 1 ELSE 2 END") + `)
	) AS r(k, partner, i, kind, points, reversed, reverses)
	WHERE ` + reversalUnit},
	{"entries", unitsCTE + `INSERT INTO entries (txn_id, seq, account, amount, created_at, period)
	SELECT ` + id("r.k") + `, r.seq, r.account, r.amount, ` + at("r.k") + `, $9::INT8
	FROM u, LATERAL (VALUES
		(0, 0, 'member:' || u.m, u.x), (0, 1, 'partner:' || u.pa1 || ':issued', -u.x),
		(1, 0, 'member:' || u.m, u.y), (1, 1, 'partner:' || u.pa2 || ':issued', -u.y),
		(2, 0, 'member:' || u.m, -u.z), (2, 1, 'partner:' || u.pr || ':redeemed', u.z),
		(3, 0, CASE WHEN u.rev_award THEN 'member:' || u.m ELSE 'partner:' || u.pr || ':redeemed' END,
			CASE WHEN u.rev_award THEN -u.ra ELSE -u.z END),
		(3, 1, CASE WHEN u.rev_award THEN 'partner:' || u.pa2 || ':issued' ELSE 'member:' || u.m END,
			CASE WHEN u.rev_award THEN u.ra ELSE u.z END)
	) AS r(k, seq, account, amount)
	WHERE ` + reversalUnit},
	{"lots", unitsCTE + `INSERT INTO lots (id, member_id, issuer, partner_id, points, reversed, remaining, price_version, expires_at, created_at)
	SELECT ` + id("r.k") + `, u.m, 'partner:' || r.partner, r.partner, r.points, r.reversed, r.remaining,
		` + version("r.i", "r.k") + `, ` + at("r.k") + ` + INTERVAL '` + fmt.Sprint(lotLifetimeDays) + ` days', ` + at("r.k") + `
	FROM u, LATERAL (VALUES
		(0, u.pa1, u.i1, u.x, 0, u.x - u.take1 + CASE WHEN u.rev_redeem THEN u.take1 ELSE 0 END),
		(1, u.pa2, u.i2, u.y, CASE WHEN u.rev_award THEN u.ra ELSE 0 END,
			u.y - u.take2 + CASE WHEN u.rev_redeem THEN u.take2 ELSE 0 END - CASE WHEN u.rev_award THEN u.ra ELSE 0 END)
	) AS r(k, partner, i, points, reversed, remaining)`},
	{"lot_consumptions", unitsCTE + `INSERT INTO lot_consumptions (txn_id, lot_id, seq, issuer, points, returned,
		period, partner_id, price_version, created_at, issuer_first)
	SELECT ` + id("2") + `, ` + id("r.k") + `, r.k, 'partner:' || r.issuer, r.points, CASE WHEN u.rev_redeem THEN r.points ELSE 0 END,
		$9::INT8, u.pr, ` + version("u.ir", "2") + `, ` + at("2") + `, r.k = 0 OR u.pa1 <> u.pa2
	FROM u, LATERAL (VALUES (0, u.pa1, u.take1), (1, u.pa2, u.take2)) AS r(k, issuer, points)
	WHERE r.points > 0`},
	{"lot_returns", unitsCTE + `INSERT INTO lot_returns (txn_id, lot_id, issuer, points)
	SELECT ` + id("3") + `, ` + id("r.k") + `, 'partner:' || r.issuer, r.points
	FROM u, LATERAL (VALUES (0, u.pa1, u.take1), (1, u.pa2, u.take2)) AS r(k, issuer, points)
	WHERE u.rev_redeem AND r.points > 0`},
}

// membersSQL gives every generated member the balance its lots hold (no holds, no debt).
const membersSQL = `INSERT INTO members (id, posted, created_at, updated_at)
SELECT member_id, sum(remaining), min(created_at), max(created_at) FROM lots WHERE member_id LIKE 'bench-m%' GROUP BY member_id`
