package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Roll-ups let a settlement run sum a period without reading every row of it.
//
// Every ledger transaction is stamped with the open roll-up epoch, read from the same
// settlement_state shard row (FOR SHARE) as its period. Sealing an epoch updates every shard,
// which waits for the transactions that read the old epoch, exactly like a period close: once
// the seal commits, no transaction of that epoch can still commit, so its rows are final. The
// roll-up worker then adds each sealed epoch's sums once, in one transaction with its
// rollup_epochs marker, to rollup_flows, rollup_lineage and rollup_totals, keyed by hour of
// created_at and settlement period — what a run's period membership depends on — so the
// rollups grow with hours, not with epochs or transactions. Epochs are rolled up in order,
// each only once the one before it is: the rollups always stand for epochs 0 to R.
//
// A run reads the rolled-up hours entirely inside or entirely before its window from the
// rollups, and everything else from the ledger rows: the epochs not rolled up yet (found
// through transactions' epoch index) and the two hours holding the previous cutoff and the
// cutoff (through the created_at index). Both halves are sums of the same immutable rows, so a
// run prices a period the same whichever way its rows are split, and a re-run is
// byte-identical. Reversals and campaign bonuses, a small share, are always read from the
// ledger.

// hourMicros is a roll-up bucket: hour_no h holds created_at in ((h-1)·1h, h·1h] since 1970.
const hourMicros = 3_600_000_000

// hourOf is the roll-up hour holding t (hourNo in SQL).
func hourOf(t time.Time) int64 {
	us := t.UnixMicro()
	h := us / hourMicros
	if us%hourMicros > 0 {
		h++
	}
	return h
}

// hourStart is the exclusive lower bound of hour h.
func hourStart(h int64) time.Time { return time.UnixMicro((h - 1) * hourMicros).UTC() }

// hourNo is hourOf in SQL, in integer arithmetic on microseconds (both engines).
func hourNo(col string) string {
	return `div((extract(epoch FROM ` + col + `) * 1000000)::INT8 + 3599999999, 3600000000)::INT8`
}

// flowKinds selects the transactions settlement prices as partner flows, reversals aside: awards,
// redemptions, captures and expiries charged to a partner.
func flowKinds(t string) string {
	return `(` + t + `.kind IN ('award', 'redeem', 'capture') OR (` + t + `.kind = 'expiry' AND ` + t + `.reference = 'partner:' || ` + t + `.partner_id))`
}

// rollEpochSQL adds one sealed epoch's sums ($1) to the rollup tables and marks it rolled up
// ($2: the time), in one transaction. Entries and lineage rows are found through their
// transaction's epoch.
var rollEpochSQL = []struct {
	what, sql string
	withTime  bool // takes $2
}{
	{"roll up flows", `INSERT INTO rollup_flows (hour_no, period, partner_id, kind, price_version, points, txns)
		SELECT ` + hourNo("t.created_at") + `, t.period, t.partner_id, t.kind, t.price_version, sum(t.points)::INT8, count(*)::INT8
		FROM transactions t WHERE t.epoch = $1 AND ` + flowKinds("t") + `
		GROUP BY 1, 2, 3, 4, 5
		ON CONFLICT (hour_no, period, partner_id, kind, price_version)
		DO UPDATE SET points = rollup_flows.points + excluded.points, txns = rollup_flows.txns + excluded.txns`, false},
	{"roll up lineage", `INSERT INTO rollup_lineage (hour_no, period, issuer, partner_id, price_version, points, redemptions)
		SELECT ` + hourNo("c.created_at") + `, c.period, c.issuer, c.partner_id, c.price_version, sum(c.points)::INT8,
			sum(CASE WHEN c.issuer_first THEN 1 ELSE 0 END)::INT8
		FROM transactions t JOIN lot_consumptions c ON c.txn_id = t.id WHERE t.epoch = $1
		GROUP BY 1, 2, 3, 4, 5
		ON CONFLICT (hour_no, period, issuer, partner_id, price_version)
		DO UPDATE SET points = rollup_lineage.points + excluded.points, redemptions = rollup_lineage.redemptions + excluded.redemptions`, false},
	{"roll up ledger totals", `INSERT INTO rollup_totals (hour_no, period, account, amount)
		SELECT ` + hourNo("e.created_at") + `, e.period, e.account, sum(e.amount)::INT8
		FROM transactions t JOIN entries e ON e.txn_id = t.id
		WHERE t.epoch = $1 AND (e.account LIKE 'partner:%' OR e.account LIKE 'campaign:%')
		GROUP BY 1, 2, 3
		ON CONFLICT (hour_no, period, account) DO UPDATE SET amount = rollup_totals.amount + excluded.amount`, false},
	{"mark the epoch rolled up", `INSERT INTO rollup_epochs (epoch, transactions, rolled_at)
		SELECT $1, count(*), $2 FROM transactions WHERE epoch = $1`, true},
}

// rolledThroughSQL is the last epoch e such that every epoch up to e is rolled up (-1: none).
const rolledThroughSQL = `SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM rollup_epochs WHERE epoch = 0) THEN -1
	ELSE (SELECT min(r.epoch) FROM rollup_epochs r WHERE NOT EXISTS (SELECT 1 FROM rollup_epochs n WHERE n.epoch = r.epoch + 1)) END`

// RollUpStats says what one RollUp did.
type RollUpStats struct {
	Sealed        bool  // the open epoch had transactions and was sealed
	Rolled        int   // epochs rolled up by this call
	Transactions  int64 // transactions in them
	RolledThrough int64 // every epoch up to this one is rolled up (-1: none)
}

// RollUp seals the open epoch when it holds transactions, then rolls up every sealed epoch not
// rolled up yet, oldest first, each in its own transaction. Replicas may call it concurrently:
// an epoch another one rolled up meanwhile is skipped. The gateway calls it every
// --rollup-interval; a settlement run calls it after closing its period.
func (s *Store) RollUp(ctx context.Context, now time.Time) (RollUpStats, error) {
	return s.rollUp(ctx, now, true)
}

// rollUp is RollUp, sealing the open epoch only when seal is true.
func (s *Store) rollUp(ctx context.Context, now time.Time, seal bool) (RollUpStats, error) {
	var st RollUpStats
	open, err := s.sealEpoch(ctx, seal)
	if err != nil {
		return st, err
	}
	st.Sealed = open.sealed
	if err := s.pool.QueryRow(ctx, rolledThroughSQL).Scan(&st.RolledThrough); err != nil {
		return st, fmt.Errorf("read rolled-up epochs: %w", err)
	}
	for e := st.RolledThrough + 1; e < open.epoch; e++ {
		n, err := s.rollEpoch(ctx, e, now)
		if err != nil {
			return st, fmt.Errorf("roll up epoch %d: %w", e, err)
		}
		st.Rolled++
		st.Transactions += n
		st.RolledThrough = e
	}
	return st, nil
}

type openEpoch struct {
	epoch  int64 // open after the call
	sealed bool
}

// sealEpoch closes the open epoch if seal is set and any transaction was stamped with it; it
// returns the open epoch. The emptiness check
// reads outside the sealing transaction, so that transaction reads no ledger row: under
// PostgreSQL's SSI it then conflicts with no ledger transaction but through settlement_state.
func (s *Store) sealEpoch(ctx context.Context, seal bool) (openEpoch, error) {
	var o openEpoch
	if err := s.pool.QueryRow(ctx, `SELECT open_epoch FROM settlement_state WHERE shard = 0`).Scan(&o.epoch); err != nil {
		return o, fmt.Errorf("read the open epoch: %w", err)
	}
	if !seal {
		return o, nil
	}
	var used bool // a parameter, not a correlated subquery: PostgreSQL then looks it up in the epoch index
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM transactions WHERE epoch = $1)`, o.epoch).Scan(&used); err != nil {
		return o, fmt.Errorf("read the open epoch: %w", err)
	}
	if !used {
		return o, nil
	}
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		// Every shard moves from o.epoch together; another replica's seal leaves none to move.
		tag, err := tx.Exec(ctx, `UPDATE settlement_state SET open_epoch = open_epoch + 1 WHERE open_epoch = $1`, o.epoch)
		if err != nil {
			return fmt.Errorf("seal epoch %d: %w", o.epoch, err)
		}
		if n := tag.RowsAffected(); n != 0 && n != stateShards {
			return fmt.Errorf("seal epoch %d: %d of %d settlement_state shards were at it", o.epoch, n, stateShards)
		}
		return nil
	})
	if err != nil {
		return o, err
	}
	o.epoch++ // sealed here or by another replica
	o.sealed = true
	return o, nil
}

// rollEpoch sums one sealed epoch. Its rows never change again, so on PostgreSQL the sums are
// read at REPEATABLE READ: a snapshot that takes no SSI read locks, so live ledger
// transactions writing next to them never fail because of the roll-up. The marker's primary
// key makes a second roll-up of the same epoch fail; that one reports the epoch as done.
func (s *Store) rollEpoch(ctx context.Context, epoch int64, now time.Time) (int64, error) {
	engine, err := s.Engine(ctx)
	if err != nil {
		return 0, err
	}
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead}
	if engine == EngineCockroach {
		opts.IsoLevel = pgx.Serializable
	}
	tx, err := s.pool.BeginTx(ctx, opts)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer rollback(tx)
	var b pgx.Batch
	for _, q := range rollEpochSQL {
		args := []any{epoch}
		if q.withTime {
			args = append(args, now)
		}
		b.Queue(q.sql, args...)
	}
	var n int64
	b.Queue(`SELECT transactions FROM rollup_epochs WHERE epoch = $1`, epoch).QueryRow(func(r pgx.Row) error { return r.Scan(&n) })
	err = tx.SendBatch(ctx, &b).Close()
	if err == nil {
		err = tx.Commit(ctx)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "23505" || pgErr.Code == sqlstateSerializationFailure) {
		var done bool // rolled up concurrently?
		if qerr := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM rollup_epochs WHERE epoch = $1)`, epoch).Scan(&done); qerr == nil && done {
			return 0, nil
		}
	}
	return n, err
}
