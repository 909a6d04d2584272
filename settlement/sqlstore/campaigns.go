package sqlstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// applyCampaigns credits the bonuses of the campaigns that apply to an award, in the award's
// transaction, and adds them to out (issue 7).
func (s *Store) applyCampaigns(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, out *settlement.Outcome, now time.Time) error {
	return nil
}
