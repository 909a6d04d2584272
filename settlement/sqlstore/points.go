package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// lotPageSize bounds how many lots one query reads while consuming a redemption.
const lotPageSize = 200

// award credits a new lot issued by the caller, enrolling the member on first award. A member
// in debt (a reversed award whose points were already spent) pays it back from this lot first.
func (s *Store) award(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, now time.Time) (settlement.Outcome, error) {
	limits, camps, err := w.stamp.awardTerms.get()
	if err != nil {
		limits, camps, err = readAwardTerms(ctx, tx, cmd.PartnerID, now)
	}
	if err != nil {
		return settlement.Outcome{}, err
	}
	if err := s.checkAwardLimits(ctx, tx, w, cmd, limits, now); err != nil {
		return settlement.Outcome{}, err
	}
	var c credit
	if w.stamp.credited != nil {
		c = *w.stamp.credited // sent with the transaction's first round trip (applyFresh)
	} else if err := tx.QueryRow(ctx, creditSQL, cmd.MemberID, cmd.Points, now).Scan(c.dest()...); err != nil {
		return settlement.Outcome{}, fmt.Errorf("credit member: %w", err)
	}
	out, err := s.awardCredited(w, cmd, c, now)
	if err != nil {
		return settlement.Outcome{}, err
	}
	if err := s.applyCampaigns(ctx, tx, w, cmd, camps, &out, now); err != nil {
		return settlement.Outcome{}, err
	}
	return out, nil
}

// creditSQL credits an award to member $1 ($2 points at $3), enrolling the member on first
// award and paying back debt first; it returns credit's columns.
const creditSQL = `INSERT INTO members (id, posted, created_at, updated_at) VALUES ($1, $2, $3, $3)
	ON CONFLICT (id) DO UPDATE SET
		posted = members.posted + excluded.posted,
		debt = CASE WHEN members.debt > excluded.posted THEN members.debt - excluded.posted ELSE 0 END,
		last_repaid = LEAST(members.debt, excluded.posted),
		updated_at = excluded.updated_at
	RETURNING posted, held, status, last_repaid`

// credit is what creditSQL returns.
type credit struct {
	bal    settlement.Balance
	status string
	repaid int64 // debt paid back from this award
}

func (c *credit) dest() []any { return []any{&c.bal.Posted, &c.bal.Held, &c.status, &c.repaid} }

// memberBlocked is the refusal of a command on a member who is not active.
func memberBlocked(memberID string) error {
	return fmt.Errorf("%w: member %s", settlement.ErrMemberBlocked, memberID)
}

// newAward is the outcome of an award whose member was credited (c) and its occurrence
// time. Errors: settlement.ErrMemberBlocked (the credit must be rolled back).
func newAward(cmd settlement.Command, c credit, now time.Time) (settlement.Outcome, time.Time, error) {
	if c.status != "active" {
		return settlement.Outcome{}, time.Time{}, memberBlocked(cmd.MemberID)
	}
	bal := c.bal
	bal.MemberID = cmd.MemberID
	occurred := cmd.OccurredAt
	if occurred.IsZero() {
		occurred = now
	}
	t := settlement.Transaction{ID: newID(), PartnerID: cmd.PartnerID, MemberID: cmd.MemberID,
		Kind: settlement.KindAward, Points: cmd.Points, Reference: cmd.Reference, CreatedAt: now}
	return settlement.Outcome{Transaction: t, Balance: bal}, occurred, nil
}

// awardCredited queues the writes of an award whose member was credited (c): the transaction,
// its entries and its lot. Errors: settlement.ErrMemberBlocked (the credit must be rolled back).
func (s *Store) awardCredited(w *writes, cmd settlement.Command, c credit, now time.Time) (settlement.Outcome, error) {
	out, occurred, err := newAward(cmd, c, now)
	if err != nil {
		return settlement.Outcome{}, err
	}
	t := out.Transaction
	err = w.addTxn(txnRow{id: t.ID, partnerID: t.PartnerID, memberID: t.MemberID, kind: string(t.Kind),
		points: t.Points, reference: t.Reference, key: cmd.IdempotencyKey, metadata: cmd.Metadata,
		occurredAt: occurred, createdAt: now},
		entry{memberAccount(cmd.MemberID), cmd.Points},
		entry{partnerIssuedAccount(cmd.PartnerID), -cmd.Points})
	if err != nil {
		return settlement.Outcome{}, err
	}
	w.insert("insert lot", 1, `INSERT INTO lots (id, member_id, issuer, partner_id, points, remaining, expires_at, created_at, price_version)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		t.ID, cmd.MemberID, partnerIssuer(cmd.PartnerID), cmd.PartnerID, cmd.Points, cmd.Points-c.repaid,
		now.Add(s.lotLifetime), now, w.stamp.priceVersion)
	return out, nil
}

// readAwardTerms reads, in one round trip, the awarding partner's limits in the terms version
// in force at now, the one the award is stamped with (nil without terms), and the campaigns
// that apply at now.
func readAwardTerms(ctx context.Context, tx pgx.Tx, partnerID string, now time.Time) (*termsLimits, []applicable, error) {
	var t awardTerms
	var b pgx.Batch
	queueAwardTerms(&b, &t, partnerID, now)
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return nil, nil, fmt.Errorf("read limits and campaigns: %w", err)
	}
	return t.limits, t.camps, nil
}

// awardTerms are readAwardTerms' results read ahead for a group-commit batch (group.go) or
// with the transaction's first round trip (applyFresh).
type awardTerms struct {
	limits *termsLimits
	camps  []applicable
	// current: read in the award's own transaction with nothing written since that could
	// change them (a lone command), so they hold even for a partner with exposure limits.
	current bool
}

// errNotReadAhead makes award read its terms itself.
var errNotReadAhead = errors.New("award terms not read ahead")

// get returns the terms read ahead, or errNotReadAhead when there are none or when the partner
// has exposure limits and they are not current: an earlier award of the batch may have
// provisioned its allowance since.
func (a *awardTerms) get() (*termsLimits, []applicable, error) {
	if a == nil || !a.current && a.limits != nil && (a.limits.maxValue != nil || a.limits.provisioned != nil) {
		return nil, nil, errNotReadAhead
	}
	return a.limits, a.camps, nil
}

// queueAwardTerms queues readAwardTerms' two queries for partnerID at time at (the price
// version in force then) on b, to fill t.
func queueAwardTerms(b *pgx.Batch, t *awardTerms, partnerID string, at time.Time) {
	var l termsLimits
	b.Queue(limitsAtSQL, partnerID, at).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&l.maxValue, &l.maxTxn, &l.maxDay, &l.price, &l.provisioned)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err == nil {
			t.limits = &l
		}
		return err
	})
	b.Queue(applicableSQL, partnerID, at, maxCampaignsPerAward).Query(func(rows pgx.Rows) error {
		var err error
		t.camps, err = scanApplicable(rows)
		return err
	})
}

// limitsBatchSQL is limitsAtSQL for many awards in one statement: award r.ord by partner
// $1[ord] at $2[ord]; an award whose partner has no terms has no row.
const limitsBatchSQL = `SELECT r.ord, p.max_outstanding_value::TEXT, p.max_points_per_txn, p.max_points_per_member_day, p.issue_price::TEXT,
		(SELECT x.provisioned::TEXT FROM exposure_limits x WHERE x.partner_id = r.partner)
	FROM unnest($1::TEXT[], $2::TIMESTAMPTZ[]) WITH ORDINALITY AS r (partner, at, ord)
	JOIN price_terms p ON p.partner_id = r.partner
	  AND p.version = (SELECT max(v.version) FROM price_terms v WHERE v.partner_id = r.partner AND v.effective_at <= r.at)`

// queueBatchAwardTerms queues readAwardTerms' reads for every award of a batch in two
// statements (not two per award, which cost the batch's first round trip most of its time),
// to fill terms[i] for each award ps[i] (terms[i] nil for any other command).
func queueBatchAwardTerms(b *pgx.Batch, ps []*pending, terms []*awardTerms) {
	var partners []string
	var ats []time.Time
	var index []int // the award's position in ps, by its ordinal - 1
	for i, p := range ps {
		if p.cmd.Op == settlement.OpAward {
			terms[i] = &awardTerms{}
			partners, ats, index = append(partners, p.cmd.PartnerID), append(ats, p.now), append(index, i)
		}
	}
	if len(index) == 0 {
		return
	}
	award := func(ord int64) (*awardTerms, error) {
		if ord < 1 || ord > int64(len(index)) {
			return nil, fmt.Errorf("terms row %d of %d", ord, len(index))
		}
		return terms[index[ord-1]], nil
	}
	b.Queue(limitsBatchSQL, partners, ats).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var ord int64
			var l termsLimits
			if err := rows.Scan(&ord, &l.maxValue, &l.maxTxn, &l.maxDay, &l.price, &l.provisioned); err != nil {
				return fmt.Errorf("read limits: %w", err)
			}
			t, err := award(ord)
			if err != nil {
				return err
			}
			t.limits = &l
		}
		return rows.Err()
	})
	b.Queue(applicableBatchSQL, partners, ats, maxCampaignsPerAward).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			var ord int64
			a, err := scanApplicableRow(rows, &ord)
			if err != nil {
				return fmt.Errorf("read campaigns: %w", err)
			}
			t, err := award(ord)
			if err != nil {
				return err
			}
			t.camps = append(t.camps, a)
		}
		return rows.Err()
	})
}

// redeem spends points at the caller: the balance is debited only if enough is available
// (checked by the UPDATE itself), then lots are consumed soonest-expiring first. With
// w.stamp.redeemReads, the debit and the first page of lots were sent ahead (queueRedeemReads).
func (s *Store) redeem(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, now time.Time) (settlement.Outcome, error) {
	var bal settlement.Balance
	var firstLots []lotRow
	if r := w.stamp.redeemReads; r != nil && r.debited {
		bal, firstLots = settlement.Balance{MemberID: cmd.MemberID, Posted: r.posted, Held: r.held}, r.lots
	} else {
		// Not debited (or not read ahead): debitAvailable tries again and finds out why.
		var err error
		if bal, err = s.debitAvailable(ctx, tx, cmd.MemberID, cmd.Points, now, redeemDebitSQL); err != nil {
			return settlement.Outcome{}, err
		}
		if r != nil {
			firstLots = r.lots // lots are not changed by a debit or a released hold
		}
	}
	t := settlement.Transaction{ID: newID(), PartnerID: cmd.PartnerID, MemberID: cmd.MemberID,
		Kind: settlement.KindRedeem, Points: cmd.Points, Reference: cmd.Reference, CreatedAt: now}
	if err := consumeLots(ctx, tx, w, t.ID, cmd.MemberID, cmd.Points, now, firstLots); err != nil {
		return settlement.Outcome{}, err
	}
	err := w.addTxn(txnRow{id: t.ID, partnerID: t.PartnerID, memberID: t.MemberID, kind: string(t.Kind),
		points: t.Points, reference: t.Reference, key: cmd.IdempotencyKey, occurredAt: now, createdAt: now},
		entry{memberAccount(cmd.MemberID), -cmd.Points},
		entry{partnerRedeemedAccount(cmd.PartnerID), cmd.Points})
	return settlement.Outcome{Transaction: t, Balance: bal}, err
}

// redeemDebitSQL debits member $1 by $2 points at $3 if active with enough available.
const redeemDebitSQL = `UPDATE members SET posted = posted - $2, updated_at = $3
	WHERE id = $1 AND status = 'active' AND posted - held >= $2 RETURNING posted, held`

// redeemReads are a redemption's debit and first page of lots, sent ahead of it in a round trip
// that carries other statements too (queueRedeemReads).
type redeemReads struct {
	debited      bool // the debit matched: the member is active with enough available
	posted, held int64
	lots         []lotRow
}

// queueRedeemReads queues on b a redemption's debit (redeemDebitSQL) and its first page of
// lots; the result is filled when b has run. The lots are read even if the debit fails: they
// are needed whenever it succeeds, and a refusal rolls everything back.
func queueRedeemReads(b *pgx.Batch, cmd settlement.Command, now time.Time) *redeemReads {
	r := &redeemReads{}
	b.Queue(redeemDebitSQL, cmd.MemberID, cmd.Points, now).QueryRow(func(row pgx.Row) error {
		err := row.Scan(&r.posted, &r.held)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil
		case err != nil:
			return fmt.Errorf("debit member: %w", err)
		}
		r.debited = true
		return nil
	})
	b.Queue(lotPageSQL, cmd.MemberID, now, true, nil, nil, nil, lotPageSize).Query(func(rows pgx.Rows) error {
		var err error
		r.lots, err = scanLots(rows)
		return err
	})
	return r
}

// debitAvailable runs a conditional UPDATE that succeeds only when the member is active and has
// enough available points. When it matches nothing it finds out why: unknown member, blocked
// member, or insufficient points — after releasing the member's holds whose TTL has passed,
// which no longer count against the balance, and trying once more.
func (s *Store) debitAvailable(ctx context.Context, tx pgx.Tx, memberID string, points int64, now time.Time, update string) (settlement.Balance, error) {
	bal := settlement.Balance{MemberID: memberID}
	for attempt := 0; ; attempt++ {
		err := tx.QueryRow(ctx, update, memberID, points, now).Scan(&bal.Posted, &bal.Held)
		if err == nil {
			return bal, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return bal, fmt.Errorf("debit member: %w", err)
		}
		var status string
		err = tx.QueryRow(ctx, `SELECT status, posted, held FROM members WHERE id = $1`, memberID).Scan(&status, &bal.Posted, &bal.Held)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return bal, fmt.Errorf("%w: %s", settlement.ErrMemberNotFound, memberID)
		case err != nil:
			return bal, fmt.Errorf("read member: %w", err)
		case status != "active":
			return bal, memberBlocked(memberID)
		}
		released := 0
		if attempt == 0 {
			if released, err = s.releaseMemberExpiredHolds(ctx, tx, memberID, now); err != nil {
				return bal, err
			}
		}
		if released == 0 {
			return bal, fmt.Errorf("%w: available %d, requested %d", settlement.ErrInsufficientPoints, bal.Available(), points)
		}
	}
}

// lotPageSQL reads member $1's unexpired lots at $2 with points left, soonest-expiring
// first (then oldest), after ($4, $5, $6) unless $3, at most $7.
const lotPageSQL = `SELECT id, issuer, remaining, expires_at, created_at FROM lots
	WHERE member_id = $1 AND remaining > 0 AND expires_at > $2
	  AND ($3 OR (expires_at, created_at, id) > ($4, $5, $6::UUID))
	ORDER BY expires_at, created_at, id LIMIT $7`

// lotRow is a row of lotPageSQL.
type lotRow struct {
	id, issuer       string
	remaining        int64
	expires, created time.Time
}

func scanLots(rows pgx.Rows) ([]lotRow, error) {
	lots := []lotRow{} // not nil: a page read, if empty
	for rows.Next() {
		var l lotRow
		if err := rows.Scan(&l.id, &l.issuer, &l.remaining, &l.expires, &l.created); err != nil {
			return nil, fmt.Errorf("scan lot: %w", err)
		}
		lots = append(lots, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read lots: %w", err)
	}
	return lots, nil
}

// consumeLots takes points from the member's unexpired lots, soonest-expiring first (then
// oldest), and records the lineage of txnID. firstPage, when not nil, is the first page of
// lots, read ahead (queueRedeemReads).
func consumeLots(ctx context.Context, tx pgx.Tx, w *writes, txnID, memberID string, points int64, now time.Time, firstPage []lotRow) error {
	need := points
	var seq int64
	var after lotRow
	first := true
	issuers := map[string]bool{} // issuers already in this redemption's lineage
	for need > 0 {
		page := firstPage
		if !first || page == nil {
			rows, err := tx.Query(ctx, lotPageSQL, memberID, now, first, after.expires, after.created, nilIfEmpty(after.id), lotPageSize)
			if err != nil {
				return fmt.Errorf("read lots: %w", err)
			}
			if page, err = scanLots(rows); err != nil {
				return err
			}
		}
		for _, l := range page {
			if need == 0 {
				break
			}
			after = l
			take := min(l.remaining, need)
			need -= take
			w.updateRead("consume lot", `UPDATE lots SET remaining = remaining - $2 WHERE id = $1`, l.id, take)
			w.insert("record lineage", 1, `INSERT INTO lot_consumptions (txn_id, lot_id, seq, issuer, points, period, partner_id, price_version, created_at, issuer_first)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
				txnID, l.id, seq, l.issuer, take, w.stamp.period, w.stamp.partnerID, w.stamp.priceVersion, w.stamp.at, !issuers[l.issuer])
			issuers[l.issuer] = true
			seq++
		}
		if len(page) < lotPageSize && need > 0 {
			// The balance covers it but unexpired lots do not: the rest expired and awaits the sweeper.
			return fmt.Errorf("%w: %d points have expired", settlement.ErrInsufficientPoints, need)
		}
		first = false
	}
	return nil
}

func nilIfEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
