package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// membershipOf selects the rows of period $1 = (previous cutoff $2, cutoff $3] by the period
// and created_at of their transaction, as written on the row under alias a: those stamped
// with this period or earlier and created inside the window, plus the late ones — stamped
// with this period because they committed after the previous period had closed, though
// created before its cutoff. Entries and lineage rows carry their transaction's period and
// created_at, so each table is aggregated without joining transactions.
func membershipOf(a string) string {
	return `((` + a + `.period <= $1 AND ` + a + `.created_at > $2 AND ` + a + `.created_at <= $3) OR (` +
		a + `.period = $1 AND ` + a + `.created_at <= $2))`
}

// membership is membershipOf the transaction t (reconciliation reads transactions).
var membership = membershipOf("t")

// lateExpr flags late items: committed after their period closed, or reversals of a
// transaction of an earlier period (late adjustments). It needs o, the reversed original.
const lateExpr = `(t.created_at <= $2 OR COALESCE(o.created_at <= $2, false))`

// The aggregations below take, beyond $1–$3, the roll-up split (rollup.go): $4 the last
// epoch rolled up (the rollups stand for epochs 0 to $4); $5 and $6 the hours holding the
// previous cutoff and the cutoff; $7–$8 and $9–$10 those two hours' bounds. A rolled-up hour
// other than those two lies entirely before the previous cutoff (late rows, when stamped with
// this period) or entirely inside the window or after it, so its rollup row is in or out
// whole; every other row is read from the ledger.

// rolledWindow and rolledLate select the rollup rows (r: hour_no, period) of a run's window:
// hours wholly inside it, of this period or earlier ones, and hours wholly before the previous
// cutoff, of this period only (its late rows). Each is a range of one index. With $4 < 0 no
// epoch is rolled up, and no rollup row counts (tests read the ledger alone that way).
func rolledWindow(r string) string {
	return `$4 >= 0 AND ` + r + `.hour_no > $5 AND ` + r + `.hour_no < $6 AND ` + r + `.period <= $1`
}

func rolledLate(r string) string {
	return `$4 >= 0 AND ` + r + `.period = $1 AND ` + r + `.hour_no < $5`
}

// unrolled selects the ledger rows no rollup row stands for: of transaction t (epoch) and row
// a (created_at, the same clock reading as t's), those of epochs not rolled up yet or in the
// two boundary hours. The t.created_at ranges let the boundary hours be found by index. The
// joined reads also filter t by period membership (its period and created_at are its rows'),
// so the later periods' transactions among them are dropped before their rows are looked up.
func unrolled(t, a string) string {
	in := func(c string) string {
		return `((` + c + ` > $7 AND ` + c + ` <= $8) OR (` + c + ` > $9 AND ` + c + ` <= $10))`
	}
	if t == a {
		return `(` + t + `.epoch > $4 OR ` + in(t+".created_at") + `)`
	}
	return `(` + t + `.epoch > $4 OR (` + in(t+".created_at") + ` AND ` + in(a+".created_at") + `))`
}

// flowsSQL aggregates the period's partner transactions: rolled-up hours from rollup_flows,
// the rest from transactions. Everything but reversals groups by a handful of low-cardinality
// keys (a hash aggregate in memory); only reversals, a small share read through their partial
// index (migration 0402), are grouped with reverses_id so they can look up their original —
// on the aggregate, never per row. Grouping every row by reverses_id made PostgreSQL sort the
// whole period to disk. The MATERIALIZED fence keeps the planner from joining before
// aggregating.
var flowsSQL = `WITH f AS MATERIALIZED (
	SELECT r.partner_id, r.kind, NULL::UUID AS reverses_id, r.price_version, false AS late, sum(r.points)::INT8 AS points, sum(r.txns)::INT8 AS txns
	FROM rollup_flows r
	WHERE ` + rolledWindow("r") + `
	GROUP BY 1, 2, 4
	UNION ALL
	SELECT r.partner_id, r.kind, NULL::UUID AS reverses_id, r.price_version, true AS late, sum(r.points)::INT8 AS points, sum(r.txns)::INT8 AS txns
	FROM rollup_flows r
	WHERE ` + rolledLate("r") + `
	GROUP BY 1, 2, 4
	UNION ALL
	SELECT t.partner_id, t.kind, NULL::UUID AS reverses_id, t.price_version, t.created_at <= $2 AS late, sum(t.points)::INT8 AS points, count(*)::INT8 AS txns
	FROM transactions t
	WHERE ` + flowKinds("t") + ` AND ` + membership + ` AND ` + unrolled("t", "t") + `
	GROUP BY 1, 2, 4, 5
	UNION ALL
	SELECT t.partner_id, t.kind, t.reverses_id, t.price_version, t.created_at <= $2 AS late, sum(t.points)::INT8 AS points, count(*)::INT8 AS txns
	FROM transactions t
	WHERE t.kind = 'reversal' AND ` + membership + `
	GROUP BY 1, 2, 3, 4, 5
)
SELECT f.partner_id, f.kind, COALESCE(o.kind, ''), COALESCE(o.price_version, f.price_version),
	f.late OR COALESCE(o.created_at <= $2, false), sum(f.points)::INT8, sum(f.txns)::INT8
FROM f LEFT JOIN transactions o ON o.id = f.reverses_id
GROUP BY 1, 2, 3, 4, 5`

// lineageSQL aggregates lineage: redemptions from rollup_lineage and the unrolled
// lot_consumptions rows (each carries its redemption's period, time, redeemer and version;
// issuer_first counts each redemption once per issuer), reversals from the few lot_returns
// joined to their transactions.
var lineageSQL = `SELECT x.issuer, x.partner_id, x.price_version, x.late, false, sum(x.points)::INT8, sum(x.redemptions)::INT8
FROM (
	SELECT r.issuer, r.partner_id, r.price_version, false AS late, r.points, r.redemptions
	FROM rollup_lineage r
	WHERE ` + rolledWindow("r") + `
	UNION ALL
	SELECT r.issuer, r.partner_id, r.price_version, true AS late, r.points, r.redemptions
	FROM rollup_lineage r
	WHERE ` + rolledLate("r") + `
	UNION ALL
	SELECT c.issuer, c.partner_id, c.price_version, c.created_at <= $2 AS late, c.points, CASE WHEN c.issuer_first THEN 1 ELSE 0 END::INT8
	FROM transactions t JOIN lot_consumptions c ON c.txn_id = t.id
	WHERE ` + membership + ` AND ` + membershipOf("c") + ` AND ` + unrolled("t", "c") + `
) x
GROUP BY 1, 2, 3, 4
UNION ALL
SELECT r.issuer, t.partner_id, o.price_version, ` + lateExpr + `, true, sum(r.points)::INT8, count(DISTINCT t.id)::INT8
FROM lot_returns r JOIN transactions t ON t.id = r.txn_id JOIN transactions o ON o.id = t.reverses_id
WHERE ` + membership + `
GROUP BY 1, 2, 3, 4`

// ledgerTotalsSQL sums the partner and campaign accounts' entries of the period: rolled-up
// hours from rollup_totals, the rest from entries.
var ledgerTotalsSQL = `SELECT x.account, sum(x.amount)::INT8
FROM (
	SELECT r.account, r.amount FROM rollup_totals r WHERE ` + rolledWindow("r") + `
	UNION ALL
	SELECT r.account, r.amount FROM rollup_totals r WHERE ` + rolledLate("r") + `
	UNION ALL
	SELECT e.account, e.amount
	FROM transactions t JOIN entries e ON e.txn_id = t.id
	WHERE (e.account LIKE 'partner:%' OR e.account LIKE 'campaign:%') AND ` + membership + ` AND ` + membershipOf("e") + ` AND ` + unrolled("t", "e") + `
) x
GROUP BY x.account`

// pace pauses a settlement run after a step that took busy, so that its steps take at most
// Config.SettleDutyCycle of its time.
func (s *Store) pace(ctx context.Context, busy time.Duration) error {
	if s.settleDuty >= 1 {
		return nil
	}
	return sleepCtx(ctx, time.Duration(float64(busy)*(1-s.settleDuty)/s.settleDuty))
}

// rollupSplit returns the arguments $4–$10 of the aggregations for the window (prev, cutoff]
// with every epoch up to rolledThrough rolled up.
func rollupSplit(prev, cutoff time.Time, rolledThrough int64) []any {
	hp, hc := hourOf(prev), hourOf(cutoff)
	return []any{rolledThrough, hp, hc, hourStart(hp), hourStart(hp + 1), hourStart(hc), hourStart(hc + 1)}
}

// periodData reads the period's aggregates in one read-only snapshot. On PostgreSQL the
// transaction is SERIALIZABLE READ ONLY DEFERRABLE: it waits for a snapshot that cannot be
// part of a serialization anomaly, then never blocks writers nor fails. Its aggregations use
// at most Config.SettleParallelWorkers parallel workers (default none): a run is a batch job
// next to live traffic, and every core its workers take is one the ledger's backends lose.
// rollups false reads every row from the ledger (tests compare both).
func (s *Store) periodData(ctx context.Context, period int64, prev, cutoff time.Time, rollups bool) (settlement.PeriodData, error) {
	d := settlement.PeriodData{Period: period, PreviousCutoff: prev, Cutoff: cutoff,
		LedgerIssued: map[string]int64{}, LedgerRedeemed: map[string]int64{}, LedgerCampaigns: map[string]int64{}, Terms: map[settlement.TermsKey]settlement.PriceTerms{}}
	engine, err := s.Engine(ctx)
	if err != nil {
		return d, err
	}
	opts := pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadOnly}
	if engine != EngineCockroach {
		opts.DeferrableMode = pgx.Deferrable
	}
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return d, fmt.Errorf("begin snapshot: %w", err)
	}
	defer rollback(tx)
	if engine != EngineCockroach && s.settleWorkers != SettleParallelWorkersDatabase {
		// SET LOCAL: for this snapshot only. The value is a validated integer.
		if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL max_parallel_workers_per_gather = %d", s.settleWorkers)); err != nil {
			return d, fmt.Errorf("limit parallel workers: %w", err)
		}
	}
	args := []any{period, prev, cutoff}
	var rolledThrough int64
	if err := tx.QueryRow(ctx, rolledThroughSQL).Scan(&rolledThrough); err != nil {
		return d, fmt.Errorf("read rolled-up epochs: %w", err)
	}
	if !rollups {
		rolledThrough = -1
	}
	split := append(args[:3:3], rollupSplit(prev, cutoff, rolledThrough)...)
	for _, read := range []func() error{
		func() error { return readFlows(ctx, tx, split, &d) },
		func() error { return readLineage(ctx, tx, split, &d) },
		func() error { return readLedgerTotals(ctx, tx, split, &d) },
		func() error { return readCampaigns(ctx, tx, args, &d) }, // settle_campaigns.go
	} {
		start := time.Now()
		if err := read(); err != nil {
			return d, err
		}
		if err := s.pace(ctx, time.Since(start)); err != nil {
			return d, err
		}
	}
	for _, f := range d.Flows { // every counted transaction is in exactly one flow group
		d.Transactions += f.Txns
		if f.Late {
			d.Late += f.Txns
		}
	}
	rows, err := tx.Query(ctx, `SELECT `+termsColumns+` FROM price_terms`)
	if err != nil {
		return d, fmt.Errorf("read price terms: %w", err)
	}
	terms, err := pgx.CollectRows(rows, scanTerms)
	if err != nil {
		return d, fmt.Errorf("read price terms: %w", err)
	}
	for _, t := range terms {
		d.Terms[settlement.TermsKey{PartnerID: t.PartnerID, Version: t.Version}] = t
	}
	return d, tx.Commit(ctx)
}

func readFlows(ctx context.Context, tx pgx.Tx, args []any, d *settlement.PeriodData) error {
	rows, err := tx.Query(ctx, flowsSQL, args...)
	if err != nil {
		return fmt.Errorf("aggregate flows: %w", err)
	}
	d.Flows, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (settlement.FlowAggregate, error) {
		var f settlement.FlowAggregate
		return f, r.Scan(&f.PartnerID, &f.Kind, &f.Reverses, &f.Version, &f.Late, &f.Points, &f.Txns)
	})
	if err != nil {
		return fmt.Errorf("aggregate flows: %w", err)
	}
	return nil
}

func readLineage(ctx context.Context, tx pgx.Tx, args []any, d *settlement.PeriodData) error {
	rows, err := tx.Query(ctx, lineageSQL, args...)
	if err != nil {
		return fmt.Errorf("aggregate lineage: %w", err)
	}
	d.Lineage, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (settlement.LineageAggregate, error) {
		var g settlement.LineageAggregate
		return g, r.Scan(&g.Issuer, &g.Redeemer, &g.Version, &g.Late, &g.Reversal, &g.Points, &g.Txns)
	})
	if err != nil {
		return fmt.Errorf("aggregate lineage: %w", err)
	}
	return nil
}

func readLedgerTotals(ctx context.Context, tx pgx.Tx, args []any, d *settlement.PeriodData) error {
	rows, err := tx.Query(ctx, ledgerTotalsSQL, args...)
	if err != nil {
		return fmt.Errorf("ledger totals: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var account string
		var sum int64
		if err := rows.Scan(&account, &sum); err != nil {
			return fmt.Errorf("ledger totals: %w", err)
		}
		if id, ok := strings.CutPrefix(account, "campaign:"); ok {
			d.LedgerCampaigns[id] = -sum
			continue
		}
		rest := strings.TrimPrefix(account, "partner:")
		switch {
		case strings.HasSuffix(rest, ":issued"):
			d.LedgerIssued[strings.TrimSuffix(rest, ":issued")] = -sum
		case strings.HasSuffix(rest, ":redeemed"):
			d.LedgerRedeemed[strings.TrimSuffix(rest, ":redeemed")] = sum
		}
	}
	return rows.Err()
}
