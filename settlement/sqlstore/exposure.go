package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/apd/v3"
	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// unsettledValueSQL is a partner's issued-and-unsettled value: its awards, net of award
// reversals (at the original's price), stamped with periods whose issuance has not been
// given back to the allowance yet. Read only when a limit is first provisioned.
const unsettledValueSQL = `SELECT COALESCE(sum(CASE WHEN t.kind = 'award' THEN t.points ELSE -t.points END * p.issue_price), 0)::TEXT
	FROM transactions t LEFT JOIN transactions o ON o.id = t.reverses_id
	JOIN price_terms p ON p.partner_id = t.partner_id AND p.version = CASE WHEN t.kind = 'award' THEN t.price_version ELSE o.price_version END
	WHERE t.partner_id = $1 AND (t.kind = 'award' OR (t.kind = 'reversal' AND o.kind = 'award'))
	  AND NOT EXISTS (SELECT 1 FROM exposure_releases x WHERE x.period = t.period)`

// syncProvision makes the partner's allowance shards match its limit in force: created (limit
// minus what is already outstanding) when a limit appears, adjusted by the difference when it
// changes, dropped when it goes away. It writes only when the limit changed.
func (s *Store) syncProvision(ctx context.Context, tx pgx.Tx, partnerID string, limit, provisioned *string, now time.Time) error {
	switch {
	case limit == nil && provisioned == nil:
		return nil
	case limit == nil:
		if _, err := tx.Exec(ctx, `DELETE FROM exposure_shards WHERE partner_id = $1`, partnerID); err != nil {
			return fmt.Errorf("drop allowance: %w", err)
		}
		_, err := tx.Exec(ctx, `DELETE FROM exposure_limits WHERE partner_id = $1`, partnerID)
		return err
	}
	var want, have, delta apd.Decimal
	if _, _, err := want.SetString(*limit); err != nil {
		return fmt.Errorf("decode limit: %w", err)
	}
	if provisioned != nil {
		if _, _, err := have.SetString(*provisioned); err != nil {
			return fmt.Errorf("decode provisioned limit: %w", err)
		}
		if want.Cmp(&have) == 0 {
			return nil
		}
		if _, err := exact.Sub(&delta, &want, &have); err != nil {
			return err
		}
		return s.reprovision(ctx, tx, partnerID, *limit, delta, now)
	}
	var outstanding apd.Decimal
	var text string
	if err := tx.QueryRow(ctx, unsettledValueSQL, partnerID).Scan(&text); err != nil {
		return fmt.Errorf("read unsettled value: %w", err)
	}
	if _, _, err := outstanding.SetString(text); err != nil {
		return err
	}
	if _, err := exact.Sub(&delta, &want, &outstanding); err != nil {
		return err
	}
	parts, err := splitAllowance(delta)
	if err != nil {
		return err
	}
	var b pgx.Batch
	b.Queue(`INSERT INTO exposure_limits (partner_id, provisioned, updated_at) VALUES ($1, $2::DECIMAL, $3)`, partnerID, *limit, now)
	for i, p := range parts {
		b.Queue(`INSERT INTO exposure_shards (partner_id, shard, available) VALUES ($1, $2, $3::DECIMAL)`, partnerID, i, p.Text('f'))
	}
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return fmt.Errorf("provision allowance: %w", err)
	}
	s.log.Info("exposure limit provisioned", "partner", partnerID, "limit", *limit, "outstanding", outstanding.Text('f'))
	return nil
}

// reprovision adds delta (limit raised, or negative: lowered) to the shards.
func (s *Store) reprovision(ctx context.Context, tx pgx.Tx, partnerID, limit string, delta apd.Decimal, now time.Time) error {
	w := writes{}
	if err := giveAllowance(&w, partnerID, delta); err != nil {
		return err
	}
	w.exec("update provisioned limit", 1, `UPDATE exposure_limits SET provisioned = $2::DECIMAL, updated_at = $3 WHERE partner_id = $1`, partnerID, limit, now)
	_, err := w.send(ctx, tx)
	return err
}

// maxReleasePeriods bounds how many settled periods one ReleaseSettledExposure call handles.
const maxReleasePeriods = 16

// ReleaseSettledExposure gives back to the partners' allowance shards the net issuance of
// each period that has a published settlement run and was not released yet, each period in
// its own transaction (recorded in exposure_releases, so exactly once). It returns how many
// periods it released.
func (s *Store) ReleaseSettledExposure(ctx context.Context, now time.Time) (int, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT r.period FROM settlement_runs r
		WHERE r.status = 'published' AND NOT EXISTS (SELECT 1 FROM exposure_releases x WHERE x.period = r.period)
		ORDER BY r.period LIMIT $1`, maxReleasePeriods)
	if err != nil {
		return 0, fmt.Errorf("find settled periods: %w", err)
	}
	periods, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, fmt.Errorf("find settled periods: %w", err)
	}
	for i, p := range periods {
		if err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error { return releasePeriod(ctx, tx, p, now) }); err != nil {
			return i, fmt.Errorf("release period %d: %w", p, err)
		}
	}
	return len(periods), nil
}

func releasePeriod(ctx context.Context, tx pgx.Tx, period int64, now time.Time) error {
	tag, err := tx.Exec(ctx, `INSERT INTO exposure_releases (period, released_at) VALUES ($1, $2) ON CONFLICT (period) DO NOTHING`, period, now)
	if err != nil || tag.RowsAffected() == 0 {
		return err // released by another replica
	}
	rows, err := tx.Query(ctx, `SELECT t.partner_id, sum(CASE WHEN t.kind = 'award' THEN t.points ELSE -t.points END * p.issue_price)::TEXT
		FROM transactions t LEFT JOIN transactions o ON o.id = t.reverses_id
		JOIN price_terms p ON p.partner_id = t.partner_id AND p.version = CASE WHEN t.kind = 'award' THEN t.price_version ELSE o.price_version END
		WHERE t.period = $1 AND (t.kind = 'award' OR (t.kind = 'reversal' AND o.kind = 'award'))
		  AND EXISTS (SELECT 1 FROM exposure_limits l WHERE l.partner_id = t.partner_id)
		GROUP BY t.partner_id`, period)
	if err != nil {
		return fmt.Errorf("sum issuance: %w", err)
	}
	type give struct {
		partner string
		value   apd.Decimal
	}
	gives, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (give, error) {
		var g give
		var v string
		if err := r.Scan(&g.partner, &v); err != nil {
			return g, err
		}
		_, _, err := g.value.SetString(v)
		return g, err
	})
	if err != nil {
		return fmt.Errorf("sum issuance: %w", err)
	}
	w := writes{}
	for _, g := range gives {
		if err := giveAllowance(&w, g.partner, g.value); err != nil {
			return err
		}
	}
	_, err = w.send(ctx, tx)
	return err
}

// Exposures reads every limited partner's exposure from its shards (a read: awards are never
// blocked by it).
func (s *Store) Exposures(ctx context.Context) ([]settlement.Exposure, error) {
	rows, err := s.pool.Query(ctx, `SELECT l.partner_id, l.provisioned::TEXT, (l.provisioned - COALESCE(sum(s.available), 0))::TEXT, l.alerted
		FROM exposure_limits l LEFT JOIN exposure_shards s ON s.partner_id = l.partner_id
		GROUP BY l.partner_id, l.provisioned, l.alerted ORDER BY l.partner_id`)
	if err != nil {
		return nil, fmt.Errorf("read exposures: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (settlement.Exposure, error) {
		var e settlement.Exposure
		var limit, used string
		if err := r.Scan(&e.PartnerID, &limit, &used, &e.Alerted); err != nil {
			return e, err
		}
		if _, _, err := e.Limit.SetString(limit); err != nil {
			return e, err
		}
		if _, _, err := e.Outstanding.SetString(used); err != nil {
			return e, err
		}
		if e.Limit.Sign() > 0 {
			var q apd.Decimal
			if _, err := exact.Quo(&q, &e.Outstanding, &e.Limit); err != nil {
				return e, err
			}
			e.Ratio, _ = q.Float64()
		}
		return e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read exposures: %w", err)
	}
	return out, nil
}

// SetExposureAlert raises (and queues a partner.exposure_alert event to the partner when it
// subscribes) or clears the partner's 80% alert. It reports whether the state changed, so a
// raised alert is announced once per crossing even with several replicas sweeping.
func (s *Store) SetExposureAlert(ctx context.Context, e settlement.Exposure, raised bool, now time.Time) (bool, error) {
	changed := false
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE exposure_limits SET alerted = $2, updated_at = $3 WHERE partner_id = $1 AND alerted <> $2`, e.PartnerID, raised, now)
		if err != nil {
			return fmt.Errorf("set exposure alert: %w", err)
		}
		changed = tag.RowsAffected() == 1
		if !changed || !raised {
			return nil
		}
		// points carries the percentage of the limit in use.
		_, err = tx.Exec(ctx, `INSERT INTO outbox_events (id, partner_id, event_type, member_id, points, at_partner_id, txn_id, created_at, state, next_attempt_at)
			SELECT gen_random_uuid(), s.partner_id, s.event_type, '', $3, s.partner_id, gen_random_uuid(), $4, 'pending', $4
			FROM partner_subscriptions s WHERE s.partner_id = $1 AND s.event_type = $2`,
			e.PartnerID, settlement.EventExposureAlert, int64(e.Ratio*100), now)
		return err
	})
	return changed, err
}
