package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// Errors of SetPriceTerms.
var (
	// ErrTermsNotMonotonic: a new version must not take effect before the current latest one.
	ErrTermsNotMonotonic = fmt.Errorf("%w: must take effect no earlier than the latest version", settlement.ErrTermsRejected)
	// ErrTermsInPast: transactions already stamped their version; a new one cannot reach back.
	ErrTermsInPast = fmt.Errorf("%w: cannot take effect in the past", settlement.ErrTermsRejected)
)

// SetPriceTerms stores t as the partner's next version and returns it as stored. The partner
// must exist (settlement.ErrPartnerUnknown).
func (s *Store) SetPriceTerms(ctx context.Context, t settlement.PriceTerms, now time.Time) (settlement.PriceTerms, error) {
	if t.EffectiveAt.IsZero() {
		t.EffectiveAt = now
	}
	if t.EffectiveAt.Before(now.Add(-time.Second)) {
		return t, fmt.Errorf("%w: %s", ErrTermsInPast, t.EffectiveAt.UTC().Format(time.RFC3339))
	}
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM partners WHERE id = $1)`, t.PartnerID).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			return fmt.Errorf("%w: %s", settlement.ErrPartnerUnknown, t.PartnerID)
		}
		var last int64
		var lastAt *time.Time
		err := tx.QueryRow(ctx, `SELECT COALESCE(max(version), 0), max(effective_at) FROM price_terms WHERE partner_id = $1`, t.PartnerID).Scan(&last, &lastAt)
		if err != nil {
			return err
		}
		if lastAt != nil && t.EffectiveAt.Before(*lastAt) {
			return fmt.Errorf("%w (%s)", ErrTermsNotMonotonic, lastAt.UTC().Format(time.RFC3339))
		}
		t.Version = last + 1
		maxValue, maxTxn, maxDay := limitColumns(t.Limits)
		_, err = tx.Exec(ctx, `INSERT INTO price_terms (partner_id, version, effective_at, issue_price, reimbursement_rate, fee_bps, currency, breakage_share, created_at,
				max_outstanding_value, max_points_per_txn, max_points_per_member_day)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
			t.PartnerID, t.Version, t.EffectiveAt, t.IssuePrice.Text('f'), t.ReimbursementRate.Text('f'), t.FeeBps, t.Currency, t.BreakageShare.Text('f'), now,
			maxValue, maxTxn, maxDay)
		return err
	})
	return t, err
}

// ListPriceTerms returns every version of a partner's terms, oldest first ("" = all partners).
func (s *Store) ListPriceTerms(ctx context.Context, partnerID string) ([]settlement.PriceTerms, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+termsColumns+`
		FROM price_terms WHERE $1 = '' OR partner_id = $1 ORDER BY partner_id, version`, partnerID)
	if err != nil {
		return nil, fmt.Errorf("list price terms: %w", err)
	}
	return pgx.CollectRows(rows, scanTerms)
}

// termsColumns are the price_terms columns scanTerms reads, in its order.
const termsColumns = `partner_id, version, effective_at, issue_price::TEXT, reimbursement_rate::TEXT, fee_bps, currency,
	breakage_share::TEXT, max_outstanding_value::TEXT, max_points_per_txn, max_points_per_member_day`

// scanTerms scans a price_terms row selected with termsColumns.
func scanTerms(r pgx.CollectableRow) (settlement.PriceTerms, error) {
	var t settlement.PriceTerms
	var issue, reimb, share string
	var maxValue *string
	var maxTxn, maxDay *int64
	if err := r.Scan(&t.PartnerID, &t.Version, &t.EffectiveAt, &issue, &reimb, &t.FeeBps, &t.Currency, &share,
		&maxValue, &maxTxn, &maxDay); err != nil {
		return t, err
	}
	for _, f := range []struct {
		s string
		d *apd.Decimal
	}{{issue, &t.IssuePrice}, {reimb, &t.ReimbursementRate}, {share, &t.BreakageShare}} {
		if _, _, err := f.d.SetString(f.s); err != nil {
			return t, fmt.Errorf("decode decimal %q: %w", f.s, err)
		}
	}
	if maxValue != nil {
		t.Limits.MaxOutstandingValue = new(apd.Decimal)
		if _, _, err := t.Limits.MaxOutstandingValue.SetString(*maxValue); err != nil {
			return t, fmt.Errorf("decode decimal %q: %w", *maxValue, err)
		}
	}
	if maxTxn != nil {
		t.Limits.MaxPointsPerTransaction = *maxTxn
	}
	if maxDay != nil {
		t.Limits.MaxPointsPerMemberDay = *maxDay
	}
	return t, nil
}

// ListPartners returns every partner by id.
func (s *Store) ListPartners(ctx context.Context) ([]settlement.Partner, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, name, status FROM partners ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list partners: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (settlement.Partner, error) {
		var p settlement.Partner
		return p, r.Scan(&p.ID, &p.Name, &p.Status)
	})
}

// SetPartnerStatus suspends or resumes a partner. Errors: settlement.ErrPartnerUnknown.
func (s *Store) SetPartnerStatus(ctx context.Context, id string, status settlement.PartnerStatus) (settlement.Partner, error) {
	p := settlement.Partner{ID: id, Status: status}
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		err := tx.QueryRow(ctx, `UPDATE partners SET status = $2, updated_at = now() WHERE id = $1 RETURNING name`, id, string(status)).Scan(&p.Name)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s", settlement.ErrPartnerUnknown, id)
		}
		return err
	})
	return p, err
}

// Setting reads a coalition setting, or def when unset.
func (s *Store) Setting(ctx context.Context, name, def string) (string, error) {
	var v string
	err := s.pool.QueryRow(ctx, `SELECT value FROM coalition_settings WHERE name = $1`, name).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return def, nil
	}
	return v, err
}

// SetSetting writes a coalition setting.
func (s *Store) SetSetting(ctx context.Context, name, value string) error {
	return s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO coalition_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = excluded.value`, name, value)
		return err
	})
}
