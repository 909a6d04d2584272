package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// defaultRollupInterval is how often the gateway seals and rolls up the ledger's epochs.
const defaultRollupInterval = time.Minute

// runRollups seals the open roll-up epoch and sums the sealed ones every interval until ctx
// ends (sqlstore.Store.RollUp), so a settlement run reads little more than the rollups. Every
// replica runs it; they skip each other's work. A failed round is logged and retried at the
// next tick: until then a run reads the epochs not rolled up from the ledger rows.
func runRollups(ctx context.Context, every time.Duration, store *sqlstore.Store, log *slog.Logger) error {
	if every <= 0 {
		return nil
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		st, err := store.RollUp(ctx, time.Now())
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			log.Warn("roll-up", "err", err)
		case st.Rolled > 0:
			log.Debug("rolled up", "epochs", st.Rolled, "transactions", st.Transactions, "rolled_through", st.RolledThrough)
		}
	}
}
