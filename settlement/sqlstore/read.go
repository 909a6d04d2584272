package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// Balance implements settlement.Store.
func (s *Store) Balance(ctx context.Context, memberID string) (settlement.Balance, error) {
	b := settlement.Balance{MemberID: memberID}
	now := s.now()
	err := s.pool.QueryRow(ctx, `SELECT posted, held, COALESCE((SELECT sum(remaining) FROM lots
			WHERE member_id = $1 AND remaining > 0 AND expires_at > $2 AND expires_at <= $3), 0)::INT8
		FROM members WHERE id = $1`, memberID, now, now.Add(settlement.ExpiringSoonWindow)).Scan(&b.Posted, &b.Held, &b.ExpiringSoon)
	if errors.Is(err, pgx.ErrNoRows) {
		return b, fmt.Errorf("%w: %s", settlement.ErrMemberNotFound, memberID)
	}
	if err != nil {
		return b, fmt.Errorf("read balance: %w", err)
	}
	// Lots cover debt first: no more can expire than the member owns.
	b.ExpiringSoon = max(0, min(b.ExpiringSoon, b.Posted))
	return b, nil
}

// ListTransactions implements settlement.Store.
func (s *Store) ListTransactions(ctx context.Context, partnerID, memberID string, limit int, after *settlement.Page) ([]settlement.Transaction, error) {
	var afterAt time.Time
	var afterID *string
	if after != nil {
		afterAt, afterID = after.CreatedAt, &after.ID
	}
	rows, err := s.pool.Query(ctx, `SELECT id, kind, points, reversed_points, reference, reverses_id, hold_id, created_at
		FROM transactions
		WHERE partner_id = $1 AND member_id = $2 AND ($3::UUID IS NULL OR (created_at, id) < ($4, $3::UUID))
		ORDER BY created_at DESC, id DESC LIMIT $5`, partnerID, memberID, afterID, afterAt, limit)
	if err != nil {
		return nil, fmt.Errorf("list transactions: %w", err)
	}
	txns, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (settlement.Transaction, error) {
		t := settlement.Transaction{PartnerID: partnerID, MemberID: memberID}
		var reverses, hold *string
		err := r.Scan(&t.ID, &t.Kind, &t.Points, &t.ReversedPoints, &t.Reference, &reverses, &hold, &t.CreatedAt)
		if reverses != nil {
			t.ReversesID = *reverses
		}
		if hold != nil {
			t.HoldID = *hold
		}
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list transactions: %w", err)
	}
	return txns, nil
}

// Partner returns a registered partner, or settlement.ErrPartnerUnknown.
func (s *Store) Partner(ctx context.Context, id string) (settlement.Partner, error) {
	p := settlement.Partner{ID: id}
	err := s.pool.QueryRow(ctx, `SELECT name, status FROM partners WHERE id = $1`, id).Scan(&p.Name, &p.Status)
	if errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("%w: %s", settlement.ErrPartnerUnknown, id)
	}
	if err != nil {
		return p, fmt.Errorf("read partner: %w", err)
	}
	return p, nil
}

// UpsertPartner registers a partner, or updates its name and status.
func (s *Store) UpsertPartner(ctx context.Context, p settlement.Partner) error {
	if p.Status == "" {
		p.Status = settlement.PartnerActive
	}
	return s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO partners (id, name, status) VALUES ($1, $2, $3)
			ON CONFLICT (id) DO UPDATE SET name = excluded.name, status = excluded.status, updated_at = now()`,
			p.ID, p.Name, string(p.Status))
		return err
	})
}

// SetMemberStatus blocks ("blocked") or unblocks ("active") a member.
func (s *Store) SetMemberStatus(ctx context.Context, memberID, status string) error {
	return s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE members SET status = $2 WHERE id = $1`, memberID, status)
		if err == nil && tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: %s", settlement.ErrMemberNotFound, memberID)
		}
		return err
	})
}

// TransactionByReference returns the id of partnerID's award, redemption or capture with
// memberID and reference (read through the partner-and-member index). Errors:
// settlement.ErrTransactionNotFound when there is none; a *settlement.ValidationError when the
// reference names several (the caller must give the transaction's id).
func (s *Store) TransactionByReference(ctx context.Context, partnerID, memberID, reference string) (string, error) {
	rows, err := s.pool.Query(ctx, `SELECT id::TEXT FROM transactions
		WHERE partner_id = $1 AND member_id = $2 AND reference = $3 AND kind IN ('award', 'redeem', 'capture')
		ORDER BY created_at, id LIMIT 3`, partnerID, memberID, reference)
	if err != nil {
		return "", fmt.Errorf("find transaction by reference: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("find transaction by reference: %w", err)
	}
	switch len(ids) {
	case 0:
		return "", fmt.Errorf("%w: no award, redemption or capture of %s with member %s and reference %q", settlement.ErrTransactionNotFound, partnerID, memberID, reference)
	case 1:
		return ids[0], nil
	}
	return "", &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "reversal.reference",
		Description: fmt.Sprintf("names %d or more transactions of %s with member %s: give reversal.transaction_id", len(ids), partnerID, memberID)}}}
}
