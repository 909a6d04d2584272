package sqlstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// Run reads a stored run with its lines and matrix (Result rebuilt from what was stored, so
// reports never recompute). Errors: ErrRunNotFound.
func (s *Store) Run(ctx context.Context, id int64) (settlement.RunRecord, error) {
	rec := settlement.RunRecord{ID: id, Result: settlement.Result{Lines: map[string][]settlement.Line{}}}
	var checks []byte
	var model string
	var revenue, gross, netted string
	err := s.pool.QueryRow(ctx, `SELECT r.period, p.previous_cutoff, p.cutoff, r.model, r.status, r.currency, r.checks,
			r.operator_revenue::TEXT, r.gross_total::TEXT, r.netted_total::TEXT, r.transactions, r.late_transactions, r.created_at
		FROM settlement_runs r JOIN settlement_periods p ON p.period = r.period WHERE r.id = $1`, id).
		Scan(&rec.Period, &rec.PreviousCutoff, &rec.Cutoff, &model, &rec.Status, &rec.Currency, &checks,
			&revenue, &gross, &netted, &rec.Transactions, &rec.Late, &rec.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return rec, fmt.Errorf("%w: %d", ErrRunNotFound, id)
	}
	if err != nil {
		return rec, fmt.Errorf("read run: %w", err)
	}
	rec.Model = settlement.Model(model)
	rec.Result.Model, rec.Result.Currency = rec.Model, rec.Currency
	if err := json.Unmarshal(checks, &rec.Checks); err != nil {
		return rec, fmt.Errorf("decode checks: %w", err)
	}
	rec.Result.Checks = rec.Checks
	for _, f := range []struct {
		s string
		d *apd.Decimal
	}{{revenue, &rec.Result.OperatorRevenue}, {gross, &rec.Result.GrossTotal}, {netted, &rec.Result.NettedTotal}} {
		if _, _, err := f.d.SetString(f.s); err != nil {
			return rec, err
		}
	}
	if err := s.readLines(ctx, &rec); err != nil {
		return rec, err
	}
	if err := s.readMatrix(ctx, &rec); err != nil {
		return rec, err
	}
	rec.PreviousCutoff, rec.Cutoff = rec.PreviousCutoff.UTC(), rec.Cutoff.UTC()
	return rec, settlement.Renet(&rec.Result)
}

func (s *Store) readLines(ctx context.Context, rec *settlement.RunRecord) error {
	rows, err := s.pool.Query(ctx, `SELECT partner_id, kind, counterparty, price_version, points, rate::TEXT, amount::TEXT, late, transactions
		FROM settlement_lines WHERE run_id = $1 ORDER BY partner_id, line_no`, rec.ID)
	if err != nil {
		return fmt.Errorf("read lines: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var partner, rate, amount string
		var l settlement.Line
		if err := rows.Scan(&partner, &l.Kind, &l.Counterparty, &l.Version, &l.Points, &rate, &amount, &l.Late, &l.Txns); err != nil {
			return fmt.Errorf("read lines: %w", err)
		}
		if _, _, err := l.Rate.SetString(rate); err != nil {
			return err
		}
		if _, _, err := l.Amount.SetString(amount); err != nil {
			return err
		}
		// DECIMAL(20,8) pads; the statement shows the rate as the price book states it.
		l.Rate.Reduce(&l.Rate)
		rec.Result.Lines[partner] = append(rec.Result.Lines[partner], l)
	}
	return rows.Err()
}

func (s *Store) readMatrix(ctx context.Context, rec *settlement.RunRecord) error {
	rows, err := s.pool.Query(ctx, `SELECT issuer, redeemer, points FROM settlement_matrix WHERE run_id = $1 ORDER BY issuer, redeemer`, rec.ID)
	if err != nil {
		return fmt.Errorf("read matrix: %w", err)
	}
	rec.Result.Matrix, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (settlement.MatrixCell, error) {
		var c settlement.MatrixCell
		return c, r.Scan(&c.Issuer, &c.Redeemer, &c.Points)
	})
	return err
}

// Runs lists run ids, newest first (at most limit).
func (s *Store) Runs(ctx context.Context, limit int) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM settlement_runs ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[int64])
}

// ReplacePartnerRecords stores a partner's records for a run, replacing any earlier
// submission, all or nothing.
func (s *Store) ReplacePartnerRecords(ctx context.Context, runID int64, partnerID string, recs []settlement.PartnerRecord) error {
	if _, err := s.Run(ctx, runID); err != nil {
		return err
	}
	return s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var w writes
		w.exec("clear records", -1, `DELETE FROM partner_records WHERE run_id = $1 AND partner_id = $2`, runID, partnerID)
		for _, r := range recs {
			w.exec("insert record", 1, `INSERT INTO partner_records (run_id, partner_id, line, reference, kind, member_id, points, occurred_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, runID, partnerID, r.Line, r.Reference, r.Kind, r.MemberID, r.Points, r.OccurredAt)
		}
		_, err := w.send(ctx, tx)
		return err
	})
}

// reconSQL matches the partner's submitted records against its ledger transactions of the
// run's period by (reference, kind), summing points on both sides; the comparison happens in
// the database.
var reconSQL = `WITH ledger AS (
	SELECT t.reference, CASE WHEN t.kind = 'capture' THEN 'redeem' ELSE t.kind END AS kind, min(t.member_id) AS member_id, sum(t.points) AS points
	FROM transactions t
	WHERE t.partner_id = $4 AND t.kind IN ('award', 'redeem', 'capture', 'reversal') AND ` + membership + `
	GROUP BY 1, 2
), theirs AS (
	SELECT reference, CASE WHEN kind = 'capture' THEN 'redeem' ELSE kind END AS kind, min(member_id) AS member_id, sum(points) AS points
	FROM partner_records WHERE run_id = $5 AND partner_id = $4 GROUP BY 1, 2
)
SELECT CASE WHEN l.reference IS NULL THEN 'missing_here'
            WHEN p.reference IS NULL THEN 'missing_at_partner'
            WHEN l.points <> p.points THEN 'points_mismatch'
            ELSE 'matched' END,
       COALESCE(l.reference, p.reference), COALESCE(l.kind, p.kind), COALESCE(l.member_id, p.member_id),
       COALESCE(l.points, 0), COALESCE(p.points, 0)
FROM ledger l FULL OUTER JOIN theirs p ON p.reference = l.reference AND p.kind = l.kind
ORDER BY 1, 2, 3`

// Reconcile matches a partner's records for a run against the ledger.
func (s *Store) Reconcile(ctx context.Context, runID int64, partnerID string) ([]settlement.ReconItem, error) {
	rec, err := s.Run(ctx, runID)
	if err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, reconSQL, rec.Period, rec.PreviousCutoff, rec.Cutoff, partnerID, runID)
	if err != nil {
		return nil, fmt.Errorf("reconcile: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (settlement.ReconItem, error) {
		var it settlement.ReconItem
		return it, r.Scan(&it.Outcome, &it.Reference, &it.Kind, &it.MemberID, &it.LedgerPoints, &it.PartnerPoints)
	})
}

// StatementSignature returns the stored signature of a run's statement for a partner.
func (s *Store) StatementSignature(ctx context.Context, runID int64, partnerID string) (settlement.Signature, bool, error) {
	var sig settlement.Signature
	err := s.pool.QueryRow(ctx, `SELECT key_name, key_version, signature FROM statement_signatures WHERE run_id = $1 AND partner_id = $2`,
		runID, partnerID).Scan(&sig.KeyName, &sig.KeyVersion, &sig.Value)
	if errors.Is(err, pgx.ErrNoRows) {
		return sig, false, nil
	}
	if err != nil {
		return sig, false, fmt.Errorf("read signature: %w", err)
	}
	return sig, true, nil
}

// SaveStatementSignature stores a statement's signature unless one is stored already, and
// returns the stored one. Statements render deterministically, so either signature is valid.
func (s *Store) SaveStatementSignature(ctx context.Context, runID int64, partnerID string, sig settlement.Signature, now time.Time) (settlement.Signature, error) {
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO statement_signatures (run_id, partner_id, key_name, key_version, signature, created_at)
			VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_id, partner_id) DO NOTHING`,
			runID, partnerID, sig.KeyName, sig.KeyVersion, sig.Value, now)
		return err
	})
	if err != nil {
		return sig, err
	}
	stored, _, err := s.StatementSignature(ctx, runID, partnerID)
	return stored, err
}
