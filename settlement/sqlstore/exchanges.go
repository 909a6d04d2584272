package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

const exchangeColumns = `id, caller, idempotency_key, member_id, to_partner, points, units, state, COALESCE(hold_id::TEXT, ''),
	partner_credit_id, detail, attempts, next_attempt_at, created_at, updated_at`

func scanExchange(r pgx.CollectableRow) (settlement.Exchange, error) {
	var x settlement.Exchange
	var attempts int64
	err := r.Scan(&x.ID, &x.Caller, &x.IdempotencyKey, &x.MemberID, &x.ToPartner, &x.Points, &x.Units, &x.State, &x.HoldID,
		&x.PartnerCreditID, &x.Detail, &attempts, &x.NextAttemptAt, &x.CreatedAt, &x.UpdatedAt)
	x.Attempts = int(attempts)
	return x, err
}

// CreateExchange stores x (state pending) unless an exchange with its id exists, and returns
// the stored exchange and whether this call created it.
func (s *Store) CreateExchange(ctx context.Context, x settlement.Exchange) (settlement.Exchange, bool, error) {
	created := false
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO exchanges (id, caller, idempotency_key, member_id, to_partner, points, units, state,
				next_attempt_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $9) ON CONFLICT (id) DO NOTHING`,
			x.ID, x.Caller, x.IdempotencyKey, x.MemberID, x.ToPartner, x.Points, x.Units, x.NextAttemptAt, x.CreatedAt)
		if err != nil {
			return fmt.Errorf("create exchange: %w", err)
		}
		created = tag.RowsAffected() == 1
		return nil
	})
	if err != nil {
		return settlement.Exchange{}, false, err
	}
	stored, err := s.Exchange(ctx, x.ID)
	return stored, created, err
}

// Exchange returns an exchange by id. Errors: settlement.ErrExchangeNotFound.
func (s *Store) Exchange(ctx context.Context, id string) (settlement.Exchange, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+exchangeColumns+` FROM exchanges WHERE id = $1`, id)
	if err != nil {
		return settlement.Exchange{}, fmt.Errorf("read exchange: %w", err)
	}
	x, err := pgx.CollectExactlyOneRow(rows, scanExchange)
	if errors.Is(err, pgx.ErrNoRows) {
		return x, fmt.Errorf("%w: %s", settlement.ErrExchangeNotFound, id)
	}
	if err != nil {
		return x, fmt.Errorf("read exchange: %w", err)
	}
	return x, nil
}

// UpdateExchange writes x's progress (state, hold, credit, detail, attempts, next attempt)
// while the stored exchange is still pending, and returns the stored exchange: a terminal
// state is never left, so a late or duplicate writer cannot undo a definite outcome.
func (s *Store) UpdateExchange(ctx context.Context, x settlement.Exchange, now time.Time) (settlement.Exchange, error) {
	var holdID *string
	if x.HoldID != "" {
		holdID = &x.HoldID
	}
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE exchanges SET state = $2, hold_id = COALESCE($3::UUID, hold_id), partner_credit_id = $4,
				detail = $5, attempts = $6, next_attempt_at = $7, updated_at = $8
			WHERE id = $1 AND state = 'pending'`,
			x.ID, string(x.State), holdID, x.PartnerCreditID, x.Detail, x.Attempts, x.NextAttemptAt, now)
		if err != nil {
			return fmt.Errorf("update exchange: %w", err)
		}
		return nil
	})
	if err != nil {
		return settlement.Exchange{}, err
	}
	return s.Exchange(ctx, x.ID)
}

// ClaimDueExchanges claims up to limit pending exchanges due at now by moving their next
// attempt to now+lease, and returns them. Rows another replica is claiming are skipped.
func (s *Store) ClaimDueExchanges(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]settlement.Exchange, error) {
	var out []settlement.Exchange
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE exchanges SET next_attempt_at = $2
			WHERE id IN (SELECT id FROM exchanges WHERE state = 'pending' AND next_attempt_at <= $1
				ORDER BY next_attempt_at LIMIT $3 FOR UPDATE SKIP LOCKED)
			RETURNING `+exchangeColumns, now, now.Add(lease), limit)
		if err != nil {
			return fmt.Errorf("claim exchanges: %w", err)
		}
		out, err = pgx.CollectRows(rows, scanExchange)
		if err != nil {
			return fmt.Errorf("claim exchanges: %w", err)
		}
		return nil
	})
	return out, err
}
