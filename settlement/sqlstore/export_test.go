package sqlstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/coalitionexchange/coalition/settlement"
)

// ApplyBatch runs cmds as one group-commit batch, exactly as a committer takes it from the
// queue, and returns each command's outcome and error in order.
func ApplyBatch(s *Store, cmds []settlement.Command, now time.Time) ([]settlement.Outcome, []error) {
	ps := make([]*pending, len(cmds))
	for i, c := range cmds {
		ps[i] = &pending{ctx: context.Background(), cmd: c, fp: settlement.Fingerprint(c), now: now.Truncate(time.Microsecond), done: make(chan struct{})}
	}
	s.applyBatch(ps, 0)
	outs := make([]settlement.Outcome, len(ps))
	errs := make([]error, len(ps))
	for i, p := range ps {
		<-p.done
		outs[i], errs[i] = p.out, p.err
	}
	return outs, errs
}

// ApplyPerStatement applies cmd alone on the per-statement path (effect, then storeKey: each
// row its own INSERT), the one campaign awards take, not the plain awards' bulk statement
// (awardBulkSQL): the reference that statement's rows are compared with.
func ApplyPerStatement(s *Store, cmd settlement.Command, now time.Time) (settlement.Outcome, error) {
	now = now.Truncate(time.Microsecond)
	var out settlement.Outcome
	err := s.runner.Run(context.Background(), func(ctx context.Context, tx pgx.Tx) error {
		st, err := readStamp(ctx, tx, cmd.PartnerID, now)
		if err != nil {
			return err
		}
		w := writes{stamp: st} // no Pipeline.Last: applyStamped cannot take plainAward
		out, err = s.applyStamped(ctx, tx, &w, cmd, settlement.Fingerprint(cmd), now)
		return err
	})
	return out, err
}

// PeriodData reads a period's aggregates as a settlement run does: from the rollups and the
// unrolled ledger rows, or (rollups false) from the ledger rows alone.
func PeriodData(ctx context.Context, s *Store, period int64, prev, cutoff time.Time, rollups bool) (settlement.PeriodData, error) {
	return s.periodData(ctx, period, prev, cutoff, rollups)
}
