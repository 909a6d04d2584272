package sqlstore

import (
	"context"
	"time"

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

// PeriodData reads a period's aggregates as a settlement run does: from the rollups and the
// unrolled ledger rows, or (rollups false) from the ledger rows alone.
func PeriodData(ctx context.Context, s *Store, period int64, prev, cutoff time.Time, rollups bool) (settlement.PeriodData, error) {
	return s.periodData(ctx, period, prev, cutoff, rollups)
}
