package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// liabilitySQL aggregates outstanding lots by issuer and age bucket in the database: $1 is the
// report time, $2..$5 the bucket edges (3, 6, 12 and 24 months before it), $6 the end of the
// expiring-soon window. Values use the issue price of each lot's own price-book version.
const liabilitySQL = `SELECT l.issuer,
	CASE WHEN l.created_at > $2 THEN 0 WHEN l.created_at > $3 THEN 1 WHEN l.created_at > $4 THEN 2 WHEN l.created_at > $5 THEN 3 ELSE 4 END AS bucket,
	count(*)::INT8, sum(l.remaining)::INT8,
	sum(CASE WHEN l.expires_at <= $6 THEN l.remaining ELSE 0 END)::INT8,
	COALESCE(sum(l.remaining * p.issue_price), 0)::TEXT,
	COALESCE(sum(CASE WHEN l.expires_at <= $6 THEN l.remaining * p.issue_price ELSE 0 END), 0)::TEXT,
	COALESCE(min(p.currency), ''), bool_and(p.issue_price IS NOT NULL)
FROM lots l LEFT JOIN price_terms p ON l.issuer = 'partner:' || l.partner_id AND p.partner_id = l.partner_id AND p.version = l.price_version
WHERE l.remaining > 0 AND l.created_at <= $1 AND l.expires_at > $1
GROUP BY 1, 2 ORDER BY 1, 2`

// Liability reports the points outstanding at at, by issuer and age bucket, with the points
// expiring within settlement.ExpiringSoonWindow and their value at the issuers' prices. It
// reads the lots as they are now: at sets the ages and windows and excludes lots awarded after
// it or expired by it; it does not rebuild past balances.
func (s *Store) Liability(ctx context.Context, at time.Time) (settlement.LiabilityReport, error) {
	r := settlement.LiabilityReport{At: at}
	edges := []any{at}
	for _, b := range settlement.AgeBuckets[1:] {
		edges = append(edges, at.AddDate(0, -b.FromMonths, 0))
	}
	rows, err := s.pool.Query(ctx, liabilitySQL, append(edges, at.Add(settlement.ExpiringSoonWindow))...)
	if err != nil {
		return r, fmt.Errorf("liability: %w", err)
	}
	r.Rows, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (settlement.LiabilityRow, error) {
		var l settlement.LiabilityRow
		var bucket int
		var value, soon string
		if err := row.Scan(&l.Issuer, &bucket, &l.Lots, &l.Points, &l.ExpiringSoonPoints, &value, &soon, &l.Currency, &l.Priced); err != nil {
			return l, err
		}
		l.Bucket = settlement.AgeBuckets[bucket].Name
		for _, f := range []struct {
			s string
			d *apd.Decimal
		}{{value, &l.Value}, {soon, &l.ExpiringSoonValue}} {
			if _, _, err := f.d.SetString(f.s); err != nil {
				return l, fmt.Errorf("decode %q: %w", f.s, err)
			}
			rounded, err := settlement.RoundMoney(*f.d)
			if err != nil {
				return l, err
			}
			*f.d = rounded
		}
		return l, nil
	})
	if err != nil {
		return r, fmt.Errorf("liability: %w", err)
	}
	return r, nil
}
