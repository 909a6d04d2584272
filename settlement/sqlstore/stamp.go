package sqlstore

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// stateShards is the number of settlement_state rows (migration 0013).
const stateShards = 16

// stamp is what every ledger transaction records for settlement: the open period and the
// price-book version of its partner in force at the time. Entries and lineage rows carry the
// period too, and lineage its partner, version and time, so settlement aggregates each table
// alone.
type stamp struct {
	period       int64
	epoch        int64 // roll-up epoch (rollup.go)
	priceVersion int64
	partnerID    string
	at           time.Time
	// exposureShard is the allowance shard an award tries first (limits.go); -1: a random one.
	exposureShard int
	// awardTerms, when set, are the award's limits and campaigns read ahead (group.go).
	awardTerms *awardTerms
	// credited, when set, is the award's member credit, sent in the transaction's first round
	// trip (applyFresh); award then does not credit the member again.
	credited *credit
	// redeemReads, when set, are a redemption's debit and first lots, sent ahead of it
	// (queueRedeemReads); redeem then does not debit the member again.
	redeemReads *redeemReads
}

// readStamp reads one settlement_state shard FOR SHARE — so a period close or an epoch seal,
// which update every shard, wait for this transaction — and the partner's effective price
// version.
func readStamp(ctx context.Context, tx pgx.Tx, partnerID string, now time.Time) (*stamp, error) {
	var b pgx.Batch
	st := queueStamp(&b, partnerID, now)
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return nil, fmt.Errorf("read settlement period: %w", err)
	}
	return st, nil
}

// stampSQL reads settlement_state shard $1 FOR SHARE and partner $2's price version at $3.
const stampSQL = `SELECT s.open_period, s.open_epoch,
		COALESCE((SELECT max(p.version) FROM price_terms p WHERE p.partner_id = $2 AND p.effective_at <= $3), 0)
	FROM settlement_state s WHERE s.shard = $1 FOR SHARE`

// queueStamp queues readStamp's query on b: the returned stamp is filled when b has run.
func queueStamp(b *pgx.Batch, partnerID string, now time.Time) *stamp {
	st := &stamp{partnerID: partnerID, at: now, exposureShard: -1}
	b.Queue(stampSQL, rand.IntN(stateShards), partnerID, now).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&st.period, &st.epoch, &st.priceVersion); err != nil {
			return fmt.Errorf("read settlement period: %w", err)
		}
		return nil
	})
	return st
}
