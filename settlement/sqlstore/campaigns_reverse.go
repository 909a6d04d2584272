package sqlstore

import (
	"context"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// earnedBonus is a bonus an award earned, as reversals see it.
type earnedBonus struct {
	txnID, campaignID, sponsors string
	points, reversed            int64
	createdAt                   time.Time
}

// reverseBonuses takes back the campaign bonuses of the award orig (id awardID) when points of
// it are reversed, in the same transaction: after this reversal floor(bonus × reversed ÷ award)
// of each bonus is reversed, so partial reversals take their share and the last one takes the
// remainder. Each is a bonus_reversal transaction (member −p, campaign:<id> +p) out of the bonus
// lot; the points go back to the campaign's budget and the member's cap. It returns the
// bonuses taken back and the balance after them (bal when there were none).
func (s *Store) reverseBonuses(ctx context.Context, tx pgx.Tx, w *writes, orig settlement.Transaction, awardID string,
	points int64, bal settlement.Balance, now time.Time) ([]settlement.Bonus, settlement.Balance, error) {
	rows, err := tx.Query(ctx, `SELECT txn_id::TEXT, campaign_id, sponsors, points, reversed, created_at FROM campaign_bonuses
		WHERE award_id = $1 AND kind = 'bonus' ORDER BY txn_id FOR UPDATE`, awardID)
	if err != nil {
		return nil, bal, fmt.Errorf("read bonuses: %w", err)
	}
	earned, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (earnedBonus, error) {
		var b earnedBonus
		return b, r.Scan(&b.txnID, &b.campaignID, &b.sponsors, &b.points, &b.reversed, &b.createdAt)
	})
	if err != nil {
		return nil, bal, fmt.Errorf("read bonuses: %w", err)
	}
	var out []settlement.Bonus
	for _, b := range earned {
		delta := proportion(b.points, orig.ReversedPoints+points, orig.Points) - b.reversed
		if delta <= 0 {
			continue
		}
		if bal, err = reverseAward(ctx, tx, w, orig.MemberID, b.txnID, delta, now); err != nil {
			return nil, bal, err
		}
		id := newID()
		queueBonusReversal(w, orig, awardID, b, id, delta, now)
		err = w.addTxn(txnRow{id: id, partnerID: orig.PartnerID, memberID: orig.MemberID, kind: string(settlement.KindBonusReversal),
			points: delta, reason: "award reversed", reversesID: strPtr(b.txnID), occurredAt: now, createdAt: now},
			entry{memberAccount(orig.MemberID), -delta}, entry{campaignIssuer(b.campaignID), delta})
		if err != nil {
			return nil, bal, err
		}
		out = append(out, settlement.Bonus{CampaignID: b.campaignID, Points: delta, TransactionID: id})
	}
	return out, bal, nil
}

// queueBonusReversal queues what a bonus reversal changes besides the member and the lot: the
// bonus's reversed counters, the reversal's campaign_bonuses row (for settlement), and the
// points given back to a random budget shard and to the member's cap.
func queueBonusReversal(w *writes, orig settlement.Transaction, awardID string, b earnedBonus, id string, delta int64, now time.Time) {
	w.exec("count bonus reversal", 1, `UPDATE transactions SET reversed_points = reversed_points + $2
		WHERE id = $1 AND reversed_points + $2 <= points`, b.txnID, delta)
	w.exec("count bonus reversal", 1, `UPDATE campaign_bonuses SET reversed = reversed + $3
		WHERE award_id = $1 AND txn_id = $2 AND reversed + $3 <= points`, awardID, b.txnID, delta)
	w.exec("link bonus reversal", 1, `INSERT INTO campaign_bonuses (award_id, txn_id, kind, campaign_id, partner_id, member_id, points, sponsors, period, created_at, origin_created_at)
		VALUES ($1, $2, 'bonus_reversal', $3, $4, $5, $6, $7, $8, $9, $10)`,
		awardID, id, b.campaignID, orig.PartnerID, orig.MemberID, delta, b.sponsors, w.stamp.period, now, b.createdAt)
	w.exec("return budget", 1, `UPDATE campaign_budget_shards SET remaining = remaining + $3 WHERE campaign_id = $1 AND shard = $2`,
		b.campaignID, rand.IntN(budgetShards), delta)
	w.exec("return cap", 1, `UPDATE campaign_member_caps SET awarded = awarded - $3
		WHERE campaign_id = $1 AND member_id = $2 AND awarded >= $3`, b.campaignID, orig.MemberID, delta)
}

// proportion is floor(total × part ÷ whole) without overflow, for 0 ≤ part ≤ whole, whole > 0.
func proportion(total, part, whole int64) int64 {
	if part >= whole {
		return total
	}
	hi, lo := bits.Mul64(uint64(total), uint64(part))
	q, _ := bits.Div64(hi, lo, uint64(whole))
	return int64(q)
}
