package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// exposureShards is how many rows a partner's outstanding-value allowance is split into. An
// award writes one of them, so awards of one partner rarely touch the same row; only an award
// that no single shard can cover reads and locks them all (near the limit).
const exposureShards = 16

// exact is the decimal context of allowance arithmetic: products of points and 8-decimal
// prices, never rounded.
var exact = apd.BaseContext.WithPrecision(40)

// limitsAtSQL reads termsLimits of the version of partner $1's terms in force at $2.
const limitsAtSQL = `SELECT p.max_outstanding_value::TEXT, p.max_points_per_txn, p.max_points_per_member_day, p.issue_price::TEXT,
		(SELECT x.provisioned::TEXT FROM exposure_limits x WHERE x.partner_id = $1)
	FROM price_terms p WHERE p.partner_id = $1
	  AND p.version = (SELECT max(v.version) FROM price_terms v WHERE v.partner_id = $1 AND v.effective_at <= $2)`

// termsLimits is what an award reads of its partner's limits, in the stamped version.
type termsLimits struct {
	maxValue, price, provisioned *string
	maxTxn, maxDay               *int64
}

// checkAwardLimits refuses an award that would cross one of the awarding partner's exposure
// limits (issue 7), read with limitsAtSQL (nil: the partner has no terms). A refusal rolls back
// the award's transaction or savepoint, so it changes nothing, the member's credit included
// when that went ahead with the transaction's first round trip (applyFresh).
// Errors: settlement.ErrPartnerLimitExceeded, settlement.ErrMemberLimitExceeded.
func (s *Store) checkAwardLimits(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, l *termsLimits, now time.Time) error {
	if l == nil {
		return nil // no terms, no limits
	}
	if l.maxTxn != nil && cmd.Points > *l.maxTxn {
		return fmt.Errorf("%w: %d points, at most %d per transaction", settlement.ErrPartnerLimitExceeded, cmd.Points, *l.maxTxn)
	}
	if l.maxDay != nil {
		if err := countMemberDay(ctx, tx, cmd, *l.maxDay, now); err != nil {
			return err
		}
	}
	if err := s.syncProvision(ctx, tx, cmd.PartnerID, l.maxValue, l.provisioned, now); err != nil {
		return err
	}
	if l.maxValue == nil {
		return nil
	}
	value, err := pointsValue(cmd.Points, *l.price)
	if err != nil || value.Sign() == 0 {
		return err
	}
	return takeAllowance(ctx, tx, w, cmd.PartnerID, value, *l.maxValue)
}

// countMemberDay adds the award to the member's count of the day at the partner, only if the
// sum stays within maxDay. The row is the member's own: awards to other members never touch it.
func countMemberDay(ctx context.Context, tx pgx.Tx, cmd settlement.Command, maxDay int64, now time.Time) error {
	refuse := fmt.Errorf("%w: at most %d points per member per day", settlement.ErrMemberLimitExceeded, maxDay)
	if cmd.Points > maxDay {
		return refuse
	}
	var total int64
	err := tx.QueryRow(ctx, `INSERT INTO member_daily_awards (member_id, partner_id, day, points) VALUES ($1, $2, $3::DATE, $4)
		ON CONFLICT (member_id, partner_id, day) DO UPDATE SET points = member_daily_awards.points + excluded.points
		WHERE member_daily_awards.points + excluded.points <= $5
		RETURNING points`, cmd.MemberID, cmd.PartnerID, utcDay(now), cmd.Points, maxDay).Scan(&total)
	if errors.Is(err, pgx.ErrNoRows) {
		return refuse
	}
	if err != nil {
		return fmt.Errorf("count member day: %w", err)
	}
	return nil
}

func utcDay(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// pointsValue is points × price, exactly.
func pointsValue(points int64, price string) (apd.Decimal, error) {
	var p, v apd.Decimal
	if _, _, err := p.SetString(price); err != nil {
		return v, fmt.Errorf("decode issue price %q: %w", price, err)
	}
	_, err := exact.Mul(&v, apd.New(points, 0), &p)
	return v, err
}

// takeAllowance takes value from one random shard when it has enough; otherwise it locks all
// the partner's shards in order and takes from several, or refuses when their sum is short.
func takeAllowance(ctx context.Context, tx pgx.Tx, w *writes, partnerID string, value apd.Decimal, maxValue string) error {
	v := value.Text('f')
	first := w.stamp.exposureShard
	if first < 0 {
		first = rand.IntN(exposureShards)
	}
	tag, err := tx.Exec(ctx, `UPDATE exposure_shards SET available = available - $3::DECIMAL
		WHERE partner_id = $1 AND shard = $2 AND available >= $3::DECIMAL`, partnerID, first, v)
	if err != nil {
		return fmt.Errorf("take allowance: %w", err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT shard, available::TEXT FROM exposure_shards WHERE partner_id = $1 ORDER BY shard FOR UPDATE`, partnerID)
	if err != nil {
		return fmt.Errorf("read allowance: %w", err)
	}
	type shard struct {
		n     int64
		avail apd.Decimal
	}
	shards, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (shard, error) {
		var sh shard
		var a string
		if err := r.Scan(&sh.n, &a); err != nil {
			return sh, err
		}
		_, _, err := sh.avail.SetString(a)
		return sh, err
	})
	if err != nil {
		return fmt.Errorf("read allowance: %w", err)
	}
	need := value
	for _, sh := range shards {
		if need.Sign() <= 0 {
			break
		}
		if sh.avail.Sign() <= 0 {
			continue
		}
		take := sh.avail
		if take.Cmp(&need) > 0 {
			take = need
		}
		if _, err := exact.Sub(&need, &need, &take); err != nil {
			return err
		}
		w.exec("take allowance", 1, `UPDATE exposure_shards SET available = available - $3::DECIMAL WHERE partner_id = $1 AND shard = $2`,
			partnerID, sh.n, take.Text('f'))
	}
	if need.Sign() > 0 {
		return fmt.Errorf("%w: outstanding value would exceed %s (award worth %s)", settlement.ErrPartnerLimitExceeded, maxValue, v)
	}
	return nil
}

// splitAllowance spreads total over the shards: each gets total/exposureShards truncated to
// 8 decimals and shard 0 the remainder, so the parts sum to total exactly.
func splitAllowance(total apd.Decimal) ([exposureShards]apd.Decimal, error) {
	var parts [exposureShards]apd.Decimal
	var each apd.Decimal
	c := exact.WithPrecision(40)
	c.Rounding = apd.RoundDown
	if _, err := c.Quo(&each, &total, apd.New(exposureShards, 0)); err != nil {
		return parts, err
	}
	if _, err := c.Quantize(&each, &each, -8); err != nil {
		return parts, err
	}
	rest := total
	for i := 1; i < exposureShards; i++ {
		parts[i] = each
		if _, err := exact.Sub(&rest, &rest, &each); err != nil {
			return parts, err
		}
	}
	parts[0] = rest
	return parts, nil
}

// giveAllowance queues adding value (which may be negative) to the partner's shards, split.
func giveAllowance(w *writes, partnerID string, value apd.Decimal) error {
	parts, err := splitAllowance(value)
	if err != nil {
		return err
	}
	for i, p := range parts {
		if p.Sign() != 0 {
			w.exec("give allowance", -1, `UPDATE exposure_shards SET available = available + $3::DECIMAL WHERE partner_id = $1 AND shard = $2`,
				partnerID, i, p.Text('f'))
		}
	}
	return nil
}

// releaseAwardLimits queues giving back what a reversed award took: its value at the
// original's issue price to one allowance shard, and its points to the member's count of the
// award's day. Both are no-ops for partners without those limits.
func releaseAwardLimits(w *writes, partnerID, awardID string, points int64) {
	w.exec("give back allowance", -1, `UPDATE exposure_shards SET available = available + $3 * COALESCE((
			SELECT p.issue_price FROM transactions t JOIN price_terms p ON p.partner_id = t.partner_id AND p.version = t.price_version
			WHERE t.id = $4), 0)
		WHERE partner_id = $1 AND shard = $2`, partnerID, rand.IntN(exposureShards), points, awardID)
	w.exec("give back member day", -1, `UPDATE member_daily_awards SET points = GREATEST(points - $2, 0)
		WHERE member_id = (SELECT member_id FROM transactions WHERE id = $3) AND partner_id = $1
		  AND day = (SELECT (created_at AT TIME ZONE 'UTC')::DATE FROM transactions WHERE id = $3)`, partnerID, points, awardID)
}

// limitColumns converts limits to their nullable price_terms columns (zero = NULL).
func limitColumns(l settlement.Limits) (maxValue *string, maxTxn, maxDay *int64) {
	if l.MaxOutstandingValue != nil {
		v := l.MaxOutstandingValue.Text('f')
		maxValue = &v
	}
	if l.MaxPointsPerTransaction > 0 {
		maxTxn = &l.MaxPointsPerTransaction
	}
	if l.MaxPointsPerMemberDay > 0 {
		maxDay = &l.MaxPointsPerMemberDay
	}
	return maxValue, maxTxn, maxDay
}
