package sqlstore

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// EnsurePartner registers p if no partner with its id exists and reports whether it did; an
// existing partner (and its status) is left as it is.
func (s *Store) EnsurePartner(ctx context.Context, p settlement.Partner) (bool, error) {
	created := false
	err := s.runner.Run(ctx, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO partners (id, name, status) VALUES ($1, $2, 'active') ON CONFLICT (id) DO NOTHING`, p.ID, p.Name)
		created = err == nil && tag.RowsAffected() == 1
		return err
	})
	return created, err
}
