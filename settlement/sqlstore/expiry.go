package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// BreakageAccount receives the points of expired lots (DESIGN.md §4).
const BreakageAccount = "coalition:breakage"

// ExpireLots expires up to limit lots whose expiry passed at now, each in its own
// transaction, and returns how many it expired. A lot's remaining points move from the member
// to coalition:breakage in a ledger transaction of kind expiry, stamped with the lot's
// price-book version so settlement returns the breakage share at the issue price. Lots of
// members with open holds wait until the holds end (at most settlement.MaxHoldTTL), so expiry
// never takes an available balance below zero.
func (s *Store) ExpireLots(ctx context.Context, now time.Time, limit int) (int, error) {
	rows, err := s.pool.Query(ctx, `SELECT l.id::TEXT FROM lots l
		WHERE l.remaining > 0 AND l.expires_at <= $1
		  AND NOT EXISTS (SELECT 1 FROM members m WHERE m.id = l.member_id AND m.held > 0)
		ORDER BY l.expires_at, l.id LIMIT $2`, now, limit)
	if err != nil {
		return 0, fmt.Errorf("find expired lots: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, fmt.Errorf("find expired lots: %w", err)
	}
	n := 0
	for _, id := range ids {
		if ctx.Err() != nil {
			return n, ctx.Err()
		}
		var expired bool
		err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
			var err error
			expired, err = expireLot(ctx, tx, id, now)
			return err
		})
		if err != nil {
			return n, fmt.Errorf("expire lot %s: %w", id, err)
		}
		if expired {
			n++
		}
	}
	return n, nil
}

// expireLot expires one lot, re-checking under lock what the sweep's read saw. The member's
// debt (spent points of reversed awards) is paid from the lot first: only the rest is lost to
// breakage, so Σ lots remaining − debt = posted still holds.
func expireLot(ctx context.Context, tx pgx.Tx, lotID string, now time.Time) (bool, error) {
	var memberID, partnerID, issuer string
	var remaining, version, held, debt int64
	err := tx.QueryRow(ctx, `SELECT l.member_id, l.partner_id, l.issuer, l.remaining, l.price_version, m.held, m.debt
		FROM lots l JOIN members m ON m.id = l.member_id
		WHERE l.id = $1 AND l.remaining > 0 AND l.expires_at <= $2 FOR UPDATE`, lotID, now).
		Scan(&memberID, &partnerID, &issuer, &remaining, &version, &held, &debt)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil // spent, reversed or expired since the sweep read it
	}
	if err != nil {
		return false, fmt.Errorf("read lot: %w", err)
	}
	if held > 0 {
		return false, nil
	}
	st, err := readStamp(ctx, tx, partnerID, now)
	if err != nil {
		return false, err
	}
	st.priceVersion = version // breakage is priced at the lot's issue price
	repaid := min(debt, remaining)
	lost := remaining - repaid
	w := writes{stamp: st}
	w.exec("expire lot", 1, `UPDATE lots SET remaining = 0, expired = expired + $3 WHERE id = $1 AND remaining = $2`, lotID, remaining, lost)
	w.exec("debit member", 1, `UPDATE members SET posted = posted - $2, debt = debt - $3, updated_at = $4 WHERE id = $1`,
		memberID, lost, repaid, now)
	if lost > 0 {
		// reference names the lot's issuer: settlement returns breakage only to partner issuers.
		err = w.addTxn(txnRow{id: newID(), partnerID: partnerID, memberID: memberID, kind: string(settlement.KindExpiry),
			points: lost, reference: issuer, metadata: map[string]string{"lot_id": lotID}, occurredAt: now, createdAt: now},
			entry{memberAccount(memberID), -lost}, entry{BreakageAccount, lost})
		if err != nil {
			return false, err
		}
	}
	_, err = w.send(ctx, tx)
	return err == nil, err
}

// NotifyExpiring queues a points.expiring event, once per lot, for up to limit lots with
// points left that expire within window after now, to every partner subscribed to the event.
// The lots are marked and the events queued in one transaction. It returns how many lots it
// announced; with no subscriber it does nothing, so lots are announced once someone listens.
func (s *Store) NotifyExpiring(ctx context.Context, now time.Time, window time.Duration, limit int) (int, error) {
	var n int
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		n = 0
		var listening bool
		err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM partner_subscriptions WHERE event_type = $1)`, settlement.EventPointsExpiring).Scan(&listening)
		if err != nil || !listening {
			return err
		}
		rows, err := tx.Query(ctx, `UPDATE lots SET expiry_notified_at = $1 WHERE id IN (
				SELECT id FROM lots WHERE remaining > 0 AND expiry_notified_at IS NULL AND expires_at > $1 AND expires_at <= $2
				ORDER BY expires_at LIMIT $3)
			RETURNING id::TEXT`, now, now.Add(window), limit)
		if err != nil {
			return fmt.Errorf("mark expiring lots: %w", err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("mark expiring lots: %w", err)
		}
		n = len(ids)
		if n == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO outbox_events (id, partner_id, event_type, member_id, points, at_partner_id, txn_id, created_at, state, next_attempt_at)
			SELECT gen_random_uuid(), s.partner_id, s.event_type, l.member_id, l.remaining, l.partner_id, l.id, $2, 'pending', $2
			FROM lots l JOIN partner_subscriptions s ON s.event_type = $3
			WHERE l.id = ANY($1::UUID[])`, ids, now, settlement.EventPointsExpiring)
		if err != nil {
			return fmt.Errorf("queue expiring events: %w", err)
		}
		return nil
	})
	return n, err
}
