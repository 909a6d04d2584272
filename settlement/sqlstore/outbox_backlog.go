package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// OutboxBacklog is one partner's undelivered events, for the outbox depth and age metrics.
type OutboxBacklog struct {
	PartnerID string
	Pending   int64
	Oldest    time.Time
}

// OutboxBacklog returns, per partner with pending events, how many there are and when the
// oldest was written. It reads the queue index, not the delivered history.
func (s *Store) OutboxBacklog(ctx context.Context) ([]OutboxBacklog, error) {
	rows, err := s.pool.Query(ctx, `SELECT partner_id, count(*), min(created_at) FROM outbox_events
		WHERE state = 'pending' GROUP BY partner_id ORDER BY partner_id`)
	if err != nil {
		return nil, fmt.Errorf("outbox backlog: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (OutboxBacklog, error) {
		var b OutboxBacklog
		return b, r.Scan(&b.PartnerID, &b.Pending, &b.Oldest)
	})
}
