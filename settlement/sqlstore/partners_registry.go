package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// SetPartnerEndpoint stores how the coalition calls a partner and which events it receives,
// replacing the previous configuration, and returns it as stored. e must be valid and have its
// defaults applied. Errors: settlement.ErrPartnerUnknown.
func (s *Store) SetPartnerEndpoint(ctx context.Context, e settlement.PartnerEndpoint, now time.Time) (settlement.PartnerEndpoint, error) {
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM partners WHERE id = $1)`, e.PartnerID).Scan(&exists); err != nil {
			return fmt.Errorf("read partner: %w", err)
		}
		if !exists {
			return fmt.Errorf("%w: %s", settlement.ErrPartnerUnknown, e.PartnerID)
		}
		var b pgx.Batch
		b.Queue(`INSERT INTO partner_endpoints (partner_id, endpoint, server_name, call_timeout_ms, exchange_timeout_ms, max_in_flight, ratio_units, ratio_points, updated_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
			ON CONFLICT (partner_id) DO UPDATE SET endpoint = excluded.endpoint, server_name = excluded.server_name,
				call_timeout_ms = excluded.call_timeout_ms, exchange_timeout_ms = excluded.exchange_timeout_ms,
				max_in_flight = excluded.max_in_flight, ratio_units = excluded.ratio_units, ratio_points = excluded.ratio_points,
				updated_at = excluded.updated_at`,
			e.PartnerID, e.Endpoint, e.ServerName, e.CallTimeout.Milliseconds(), e.ExchangeTimeout.Milliseconds(),
			e.MaxInFlight, e.RatioUnits, e.RatioPoints, now)
		b.Queue(`DELETE FROM partner_subscriptions WHERE partner_id = $1`, e.PartnerID)
		for _, t := range e.Events {
			b.Queue(`INSERT INTO partner_subscriptions (partner_id, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING`, e.PartnerID, t)
		}
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return fmt.Errorf("write partner endpoint: %w", err)
		}
		return nil
	})
	if err != nil {
		return settlement.PartnerEndpoint{}, err
	}
	return s.PartnerEndpoint(ctx, e.PartnerID)
}

const selectEndpoints = `SELECT e.partner_id, e.endpoint, e.server_name, e.call_timeout_ms, e.exchange_timeout_ms,
		e.max_in_flight, e.ratio_units, e.ratio_points,
		COALESCE((SELECT array_agg(s.event_type ORDER BY s.event_type) FROM partner_subscriptions s WHERE s.partner_id = e.partner_id), ARRAY[]::TEXT[])
	FROM partner_endpoints e`

// PartnerEndpoint returns a partner's endpoint configuration. Errors:
// settlement.ErrPartnerNotConfigured.
func (s *Store) PartnerEndpoint(ctx context.Context, partnerID string) (settlement.PartnerEndpoint, error) {
	rows, err := s.pool.Query(ctx, selectEndpoints+` WHERE e.partner_id = $1`, partnerID)
	if err != nil {
		return settlement.PartnerEndpoint{}, fmt.Errorf("read partner endpoint: %w", err)
	}
	e, err := pgx.CollectExactlyOneRow(rows, scanEndpoint)
	if errors.Is(err, pgx.ErrNoRows) {
		return e, fmt.Errorf("%w: %s", settlement.ErrPartnerNotConfigured, partnerID)
	}
	if err != nil {
		return e, fmt.Errorf("read partner endpoint: %w", err)
	}
	return e, nil
}

// ListPartnerEndpoints returns every configured partner endpoint by partner id.
func (s *Store) ListPartnerEndpoints(ctx context.Context) ([]settlement.PartnerEndpoint, error) {
	rows, err := s.pool.Query(ctx, selectEndpoints+` ORDER BY e.partner_id`)
	if err != nil {
		return nil, fmt.Errorf("list partner endpoints: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanEndpoint)
	if err != nil {
		return nil, fmt.Errorf("list partner endpoints: %w", err)
	}
	return out, nil
}

func scanEndpoint(r pgx.CollectableRow) (settlement.PartnerEndpoint, error) {
	var e settlement.PartnerEndpoint
	var callMs, exchangeMs, inFlight int64
	err := r.Scan(&e.PartnerID, &e.Endpoint, &e.ServerName, &callMs, &exchangeMs, &inFlight, &e.RatioUnits, &e.RatioPoints, &e.Events)
	e.CallTimeout = time.Duration(callMs) * time.Millisecond
	e.ExchangeTimeout = time.Duration(exchangeMs) * time.Millisecond
	e.MaxInFlight = int(inFlight)
	return e, err
}
