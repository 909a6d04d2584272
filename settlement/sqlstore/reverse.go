package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// reverse undoes all or part of one of the caller's awards, redemptions or captures with a
// new transaction; the original is never edited beyond its reversed_points counter.
func (s *Store) reverse(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, now time.Time) (settlement.Outcome, error) {
	var orig settlement.Transaction
	err := tx.QueryRow(ctx, `SELECT partner_id, member_id, kind, points, reversed_points FROM transactions
		WHERE id = $1 AND partner_id = $2 FOR UPDATE`, cmd.TransactionID, cmd.PartnerID).
		Scan(&orig.PartnerID, &orig.MemberID, &orig.Kind, &orig.Points, &orig.ReversedPoints)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		// Another partner's transaction answers exactly like a missing one.
		return settlement.Outcome{}, fmt.Errorf("%w: %s", settlement.ErrTransactionNotFound, cmd.TransactionID)
	case err != nil:
		return settlement.Outcome{}, fmt.Errorf("read transaction: %w", err)
	case !orig.Kind.Reversible():
		return settlement.Outcome{}, fmt.Errorf("%w: %s", settlement.ErrNotReversible, orig.Kind)
	}
	left := orig.Points - orig.ReversedPoints
	points := cmd.Points
	if points == 0 {
		points = left
	}
	if points == 0 || points > left {
		return settlement.Outcome{}, fmt.Errorf("%w: %d of %d points left to reverse, asked %d",
			settlement.ErrReversalExceedsOriginal, left, orig.Points, cmd.Points)
	}
	w.exec("count reversal", 1, `UPDATE transactions SET reversed_points = reversed_points + $2
		WHERE id = $1 AND reversed_points + $2 <= points`, cmd.TransactionID, points)
	t := settlement.Transaction{ID: newID(), PartnerID: cmd.PartnerID, MemberID: orig.MemberID,
		Kind: settlement.KindReversal, Points: points, ReversesID: cmd.TransactionID, CreatedAt: now}
	var bal settlement.Balance
	var entries []entry
	var bonuses []settlement.Bonus
	if orig.Kind == settlement.KindAward {
		bal, err = reverseAward(ctx, tx, w, orig.MemberID, cmd.TransactionID, points, now)
		releaseAwardLimits(w, cmd.PartnerID, cmd.TransactionID, points) // exposure allowance and member day (limits.go)
		entries = []entry{{memberAccount(orig.MemberID), -points}, {partnerIssuedAccount(cmd.PartnerID), points}}
		if err == nil { // the campaign bonuses the award earned go with it (campaigns_reverse.go)
			bonuses, bal, err = s.reverseBonuses(ctx, tx, w, orig, cmd.TransactionID, points, bal, now)
		}
	} else {
		bal, err = reverseRedemption(ctx, tx, w, orig.MemberID, cmd.TransactionID, t.ID, points, now)
		entries = []entry{{partnerRedeemedAccount(cmd.PartnerID), -points}, {memberAccount(orig.MemberID), points}}
	}
	if err != nil {
		return settlement.Outcome{}, err
	}
	err = w.addTxn(txnRow{id: t.ID, partnerID: t.PartnerID, memberID: t.MemberID, kind: string(t.Kind), points: points,
		reason: cmd.Reason, key: cmd.IdempotencyKey, reversesID: strPtr(cmd.TransactionID), occurredAt: now, createdAt: now},
		entries...)
	return settlement.Outcome{Transaction: t, Balance: bal, Bonuses: bonuses}, err
}

// reverseAward takes points back out of the award's own lot. Points of the lot already spent
// cannot be taken back: they become member debt, and the balance may go negative (the
// purchase was returned after the points were used), which blocks redemptions.
func reverseAward(ctx context.Context, tx pgx.Tx, w *writes, memberID, lotID string, points int64, now time.Time) (settlement.Balance, error) {
	var remaining int64
	if err := tx.QueryRow(ctx, `SELECT remaining FROM lots WHERE id = $1 FOR UPDATE`, lotID).Scan(&remaining); err != nil {
		return settlement.Balance{}, fmt.Errorf("read lot: %w", err)
	}
	taken := min(points, remaining)
	w.exec("shrink lot", 1, `UPDATE lots SET reversed = reversed + $2, remaining = remaining - $3 WHERE id = $1`, lotID, points, taken)
	bal := settlement.Balance{MemberID: memberID}
	err := tx.QueryRow(ctx, `UPDATE members SET posted = posted - $2, debt = debt + $3, updated_at = $4
		WHERE id = $1 RETURNING posted, held`, memberID, points, points-taken, now).Scan(&bal.Posted, &bal.Held)
	if err != nil {
		return bal, fmt.Errorf("debit member: %w", err)
	}
	return bal, nil
}

// reverseRedemption gives points back to the lots the redemption consumed, most recently
// consumed first. A lot whose award was reversed meanwhile takes back only what is left of it;
// settleUnplaced places the rest.
func reverseRedemption(ctx context.Context, tx pgx.Tx, w *writes, memberID, txnID, reversalID string, points int64, now time.Time) (settlement.Balance, error) {
	rows, err := tx.Query(ctx, `SELECT c.lot_id, c.issuer, c.points - c.returned, l.points - l.reversed - l.remaining
		FROM lot_consumptions c JOIN lots l ON l.id = c.lot_id
		WHERE c.txn_id = $1 ORDER BY c.seq DESC`, txnID)
	if err != nil {
		return settlement.Balance{}, fmt.Errorf("read lineage: %w", err)
	}
	type use struct {
		lotID, issuer   string
		unreturned, gap int64
	}
	uses, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (use, error) {
		var u use
		return u, r.Scan(&u.lotID, &u.issuer, &u.unreturned, &u.gap)
	})
	if err != nil {
		return settlement.Balance{}, fmt.Errorf("read lineage: %w", err)
	}
	need, unplaced := points, int64(0)
	placed := make(map[string]int64, len(uses)) // lot id -> points returned to it (queued, unsent)
	for _, u := range uses {
		give := min(need, u.unreturned)
		need -= give
		if give == 0 {
			continue
		}
		back := min(give, u.gap)
		unplaced += give - back
		placed[u.lotID] = back
		w.exec("return to lineage", 1, `UPDATE lot_consumptions SET returned = returned + $3 WHERE txn_id = $1 AND lot_id = $2`, txnID, u.lotID, give)
		// The reversal's own lineage, so settlement can attribute it to issuers per period.
		w.exec("record reversal lineage", 1, `INSERT INTO lot_returns (txn_id, lot_id, issuer, points) VALUES ($1, $2, $3, $4)`,
			reversalID, u.lotID, u.issuer, give)
		if back > 0 {
			w.exec("return to lot", 1, `UPDATE lots SET remaining = remaining + $2 WHERE id = $1`, u.lotID, back)
		}
	}
	if need != 0 {
		return settlement.Balance{}, fmt.Errorf("lineage of %s covers %d fewer points than its unreversed amount", txnID, need)
	}
	debtPaid, err := settleUnplaced(ctx, tx, w, memberID, unplaced, placed)
	if err != nil {
		return settlement.Balance{}, err
	}
	bal := settlement.Balance{MemberID: memberID}
	err = tx.QueryRow(ctx, `UPDATE members SET posted = posted + $2, debt = debt - $3, updated_at = $4
		WHERE id = $1 AND debt >= $3 RETURNING posted, held`, memberID, points, debtPaid, now).Scan(&bal.Posted, &bal.Held)
	if err != nil {
		return bal, fmt.Errorf("credit member (debt paid %d): %w", debtPaid, err)
	}
	return bal, nil
}

// settleUnplaced places the points of a reversed redemption that could not go back to their
// lots because those awards were reversed after the points were spent. Such a reversal made
// the member owe them (debt), so they pay the debt first. What the debt no longer needs was
// already repaid by later awards out of their own lots: it goes back to the member's lots that
// have room (points − reversed − remaining), latest-expiring first. It returns the debt paid.
// Per member, Σ room = unreturned lineage − debt, so the room always suffices.
func settleUnplaced(ctx context.Context, tx pgx.Tx, w *writes, memberID string, unplaced int64, placed map[string]int64) (int64, error) {
	if unplaced == 0 {
		return 0, nil
	}
	var debt int64
	if err := tx.QueryRow(ctx, `SELECT debt FROM members WHERE id = $1 FOR UPDATE`, memberID).Scan(&debt); err != nil {
		return 0, fmt.Errorf("read debt: %w", err)
	}
	debtPaid := min(debt, unplaced)
	rest := unplaced - debtPaid
	if rest == 0 {
		return debtPaid, nil
	}
	rows, err := tx.Query(ctx, `SELECT id, points - reversed - remaining FROM lots
		WHERE member_id = $1 AND points - reversed - remaining > 0
		ORDER BY expires_at DESC, created_at DESC, id DESC`, memberID)
	if err != nil {
		return 0, fmt.Errorf("read lots with room: %w", err)
	}
	defer rows.Close()
	for rows.Next() && rest > 0 {
		var id string
		var room int64
		if err := rows.Scan(&id, &room); err != nil {
			return 0, fmt.Errorf("read lots with room: %w", err)
		}
		if give := min(rest, room-placed[id]); give > 0 {
			rest -= give
			w.exec("refill lot", 1, `UPDATE lots SET remaining = remaining + $2 WHERE id = $1`, id, give)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("read lots with room: %w", err)
	}
	if rest != 0 {
		return 0, fmt.Errorf("member %s: lots have no room for %d returned points", memberID, rest)
	}
	return debtPaid, nil
}
