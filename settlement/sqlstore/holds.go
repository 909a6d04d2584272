package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// authorize reserves points in a hold: held grows only if enough is available (checked by the
// UPDATE itself); the points move from the member's account to its holds account.
func (s *Store) authorize(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, now time.Time) (settlement.Outcome, error) {
	bal, err := s.debitAvailable(ctx, tx, cmd.MemberID, cmd.Points, now,
		`UPDATE members SET held = held + $2, updated_at = $3
		 WHERE id = $1 AND status = 'active' AND posted - held >= $2 RETURNING posted, held`)
	if err != nil {
		return settlement.Outcome{}, err
	}
	ttl := cmd.HoldTTL
	if ttl == 0 {
		ttl = settlement.DefaultHoldTTL
	}
	t := settlement.Transaction{ID: newID(), PartnerID: cmd.PartnerID, MemberID: cmd.MemberID,
		Kind: settlement.KindAuthorize, Points: cmd.Points, Reference: cmd.Reference, CreatedAt: now}
	h := settlement.Hold{ID: newID(), PartnerID: cmd.PartnerID, MemberID: cmd.MemberID, Points: cmd.Points,
		Status: settlement.HoldOpen, ExpiresAt: now.Add(ttl)}
	t.HoldID = h.ID
	w.exec("insert hold", 1, `INSERT INTO holds (id, partner_id, member_id, points, status, authorize_txn_id, expires_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $7)`, h.ID, h.PartnerID, h.MemberID, h.Points, t.ID, h.ExpiresAt, now)
	err = w.addTxn(txnRow{id: t.ID, partnerID: t.PartnerID, memberID: t.MemberID, kind: string(t.Kind),
		points: t.Points, reference: t.Reference, key: cmd.IdempotencyKey, holdID: &h.ID, occurredAt: now, createdAt: now},
		entry{memberAccount(cmd.MemberID), -cmd.Points},
		entry{memberHoldsAccount(cmd.MemberID), cmd.Points})
	return settlement.Outcome{Transaction: t, Balance: bal, Hold: &h}, err
}

// openHold locks one of partnerID's holds and checks it can still be captured or voided.
func openHold(ctx context.Context, tx pgx.Tx, holdID, partnerID string, now time.Time) (settlement.Hold, error) {
	h := settlement.Hold{ID: holdID, PartnerID: partnerID}
	err := tx.QueryRow(ctx, `SELECT member_id, points, captured_points, status, expires_at
		FROM holds WHERE id = $1 AND partner_id = $2 FOR UPDATE`, holdID, partnerID).
		Scan(&h.MemberID, &h.Points, &h.CapturedPoints, &h.Status, &h.ExpiresAt)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return h, fmt.Errorf("%w: %s", settlement.ErrHoldNotFound, holdID)
	case err != nil:
		return h, fmt.Errorf("read hold: %w", err)
	case h.Status != settlement.HoldOpen:
		return h, fmt.Errorf("%w: hold %s is %s", settlement.ErrHoldNotOpen, holdID, h.Status)
	case !now.Before(h.ExpiresAt):
		return h, fmt.Errorf("%w: hold %s expired at %s", settlement.ErrHoldNotOpen, holdID, h.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return h, nil
}

// capture redeems all or part of an open hold at its partner and releases the rest.
func (s *Store) capture(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, now time.Time) (settlement.Outcome, error) {
	h, err := openHold(ctx, tx, cmd.HoldID, cmd.PartnerID, now)
	if err != nil {
		return settlement.Outcome{}, err
	}
	points := cmd.Points
	if points == 0 {
		points = h.Points
	}
	if points > h.Points {
		return settlement.Outcome{}, fmt.Errorf("%w: capture %d, hold %d", settlement.ErrCaptureExceedsHold, points, h.Points)
	}
	bal := settlement.Balance{MemberID: h.MemberID}
	// posted >= points: a reversed award may have taken the held points away meanwhile.
	err = tx.QueryRow(ctx, `UPDATE members SET posted = posted - $2, held = held - $3, updated_at = $4
		WHERE id = $1 AND held >= $3 AND posted >= $2 RETURNING posted, held`,
		h.MemberID, points, h.Points, now).Scan(&bal.Posted, &bal.Held)
	if errors.Is(err, pgx.ErrNoRows) {
		return settlement.Outcome{}, fmt.Errorf("%w: the member no longer has the held points", settlement.ErrInsufficientPoints)
	}
	if err != nil {
		return settlement.Outcome{}, fmt.Errorf("capture from member: %w", err)
	}
	t := settlement.Transaction{ID: newID(), PartnerID: cmd.PartnerID, MemberID: h.MemberID,
		Kind: settlement.KindCapture, Points: points, HoldID: h.ID, CreatedAt: now}
	if err := consumeLots(ctx, tx, w, t.ID, h.MemberID, points, now, nil); err != nil {
		return settlement.Outcome{}, err
	}
	entries := []entry{{memberHoldsAccount(h.MemberID), -h.Points}, {partnerRedeemedAccount(cmd.PartnerID), points}}
	if rest := h.Points - points; rest > 0 {
		entries = append(entries, entry{memberAccount(h.MemberID), rest})
	}
	if err := w.addTxn(txnRow{id: t.ID, partnerID: t.PartnerID, memberID: t.MemberID, kind: string(t.Kind), points: points,
		key: cmd.IdempotencyKey, holdID: &h.ID, occurredAt: now, createdAt: now}, entries...); err != nil {
		return settlement.Outcome{}, err
	}
	h.Status, h.CapturedPoints = settlement.HoldCaptured, points
	w.exec("close hold", 1, `UPDATE holds SET status = 'captured', captured_points = $2, updated_at = $3 WHERE id = $1 AND status = 'open'`,
		h.ID, points, now)
	return settlement.Outcome{Transaction: t, Balance: bal, Hold: &h}, nil
}

// void releases an open hold at the partner's request.
func (s *Store) void(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, now time.Time) (settlement.Outcome, error) {
	h, err := openHold(ctx, tx, cmd.HoldID, cmd.PartnerID, now)
	if err != nil {
		return settlement.Outcome{}, err
	}
	return release(ctx, tx, w, h, settlement.HoldVoided, cmd.IdempotencyKey, now)
}

// release returns a hold's points to the member's available balance and closes the hold.
func release(ctx context.Context, tx pgx.Tx, w *writes, h settlement.Hold, status settlement.HoldStatus, key string, now time.Time) (settlement.Outcome, error) {
	bal := settlement.Balance{MemberID: h.MemberID}
	err := tx.QueryRow(ctx, `UPDATE members SET held = held - $2, updated_at = $3 WHERE id = $1 AND held >= $2 RETURNING posted, held`,
		h.MemberID, h.Points, now).Scan(&bal.Posted, &bal.Held)
	if err != nil {
		return settlement.Outcome{}, fmt.Errorf("release hold %s: %w", h.ID, err)
	}
	t := settlement.Transaction{ID: newID(), PartnerID: h.PartnerID, MemberID: h.MemberID,
		Kind: settlement.KindRelease, Points: h.Points, HoldID: h.ID, CreatedAt: now}
	if err := w.addTxn(txnRow{id: t.ID, partnerID: t.PartnerID, memberID: t.MemberID, kind: string(t.Kind), points: t.Points,
		key: key, holdID: &h.ID, occurredAt: now, createdAt: now},
		entry{memberHoldsAccount(h.MemberID), -h.Points},
		entry{memberAccount(h.MemberID), h.Points}); err != nil {
		return settlement.Outcome{}, err
	}
	h.Status = status
	w.exec("close hold", 1, `UPDATE holds SET status = $2, updated_at = $3 WHERE id = $1 AND status = 'open'`, h.ID, string(status), now)
	return settlement.Outcome{Transaction: t, Balance: bal, Hold: &h}, nil
}

// releaseMemberExpiredHolds releases, inside tx, the member's open holds whose TTL has passed.
func (s *Store) releaseMemberExpiredHolds(ctx context.Context, tx pgx.Tx, memberID string, now time.Time) (int, error) {
	rows, err := tx.Query(ctx, `SELECT id, partner_id, points, expires_at FROM holds
		WHERE member_id = $1 AND status = 'open' AND expires_at <= $2 ORDER BY expires_at LIMIT 100`, memberID, now)
	if err != nil {
		return 0, fmt.Errorf("read expired holds: %w", err)
	}
	holds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (settlement.Hold, error) {
		h := settlement.Hold{MemberID: memberID, Status: settlement.HoldOpen}
		return h, r.Scan(&h.ID, &h.PartnerID, &h.Points, &h.ExpiresAt)
	})
	if err != nil {
		return 0, fmt.Errorf("read expired holds: %w", err)
	}
	for _, h := range holds {
		st, err := readStamp(ctx, tx, h.PartnerID, now)
		if err != nil {
			return 0, err
		}
		w := writes{stamp: st}
		if _, err := release(ctx, tx, &w, h, settlement.HoldExpired, "", now); err != nil {
			return 0, err
		}
		if _, err := w.send(ctx, tx); err != nil {
			return 0, err
		}
	}
	return len(holds), nil
}

// ReleaseExpiredHolds implements settlement.Store: each expired hold is released in its own
// transaction, so one failure does not hold back the rest and no transaction grows unbounded.
func (s *Store) ReleaseExpiredHolds(ctx context.Context, now time.Time, limit int) (int, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM holds WHERE status = 'open' AND expires_at <= $1 ORDER BY expires_at LIMIT $2`, now, limit)
	if err != nil {
		return 0, fmt.Errorf("find expired holds: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("find expired holds: %w", err)
	}
	released := 0
	for _, id := range ids {
		did := false
		err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
			did = false
			h := settlement.Hold{ID: id}
			err := tx.QueryRow(ctx, `SELECT partner_id, member_id, points, status FROM holds WHERE id = $1 FOR UPDATE`, id).
				Scan(&h.PartnerID, &h.MemberID, &h.Points, &h.Status)
			if err != nil || h.Status != settlement.HoldOpen {
				return err // released meanwhile by a capture, void or another sweeper
			}
			st, err := readStamp(ctx, tx, h.PartnerID, now)
			if err != nil {
				return err
			}
			w := writes{stamp: st}
			if _, err := release(ctx, tx, &w, h, settlement.HoldExpired, "", now); err != nil {
				return err
			}
			_, err = w.send(ctx, tx)
			did = err == nil
			return err
		})
		if err != nil {
			return released, err
		}
		if did {
			released++
		}
	}
	return released, nil
}
