package sqlstore_test

import (
	"testing"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// TestAwardRoundTrips counts the round trips of plain awards and their replays on the wire,
// alone (an idle queue) and as a group-commit batch, once the statements are prepared.
func TestAwardRoundTrips(t *testing.T) {
	e := newEnv(t, envConfig{})
	pool, w := wiredPool(t, e.url, 1)
	s := newStore(t, pool, 0, sqlstore.RunnerConfig{})
	l := e.newLedger(t, s)
	ctx := ctxFor(t)
	alone := func(key string) (int64, settlement.Outcome) {
		t.Helper()
		var out settlement.Outcome
		var err error
		trips := w.count(func() { out, err = l.Apply(ctx, award(acme, "RT-1", key, 10)) })
		if err != nil {
			t.Fatalf("award %s: %v", key, err)
		}
		return trips, out
	}
	// applyBatch applies n commands made by cmd as one batch and counts its round trips.
	applyBatch := func(prefix string, n int, cmd func(i int, key string) settlement.Command) int64 {
		t.Helper()
		cmds := make([]settlement.Command, n)
		for i := range cmds {
			cmds[i] = cmd(i, prefix+string(rune('a'+i)))
		}
		var errs []error
		trips := w.count(func() { _, errs = sqlstore.ApplyBatch(s, cmds, e.clock.Now()) })
		for i, err := range errs {
			if err != nil {
				t.Fatalf("batch %s command %d: %v", prefix, i, err)
			}
		}
		return trips
	}
	batch := func(prefix string) int64 {
		return applyBatch(prefix, 8, func(i int, key string) settlement.Command {
			return award(bean, "RT-B"+string(rune('a'+i)), key, 5)
		})
	}
	redeemBatch := func(prefix string) int64 {
		return applyBatch(prefix, 4, func(_ int, key string) settlement.Command { return redeem(fuel, "RT-1", key, 1) })
	}
	// spreadBatch redeems from 4 members, who got points from batch.
	spreadBatch := func(prefix string) int64 {
		return applyBatch(prefix, 4, func(i int, key string) settlement.Command {
			return redeem(fuel, "RT-B"+string(rune('a'+i)), key, 1)
		})
	}
	// mixedBatch interleaves 3 awards and 3 redemptions.
	mixedBatch := func(prefix string) int64 {
		return applyBatch(prefix, 6, func(i int, key string) settlement.Command {
			if i%2 == 0 {
				return award(bean, "RT-M"+string(rune('a'+i)), key, 5)
			}
			return redeem(fuel, "RT-1", key, 1)
		})
	}
	redeemAlone := func(key string) int64 {
		t.Helper()
		var err error
		trips := w.count(func() { _, err = l.Apply(ctx, redeem(bean, "RT-1", key, 1)) })
		if err != nil {
			t.Fatalf("redeem %s: %v", key, err)
		}
		return trips
	}
	alone("rt-warm-1") // prepares the statements on the pool's one connection
	alone("rt-warm-1")
	alone("rt-warm-2")
	batch("rt-warm-b-")
	redeemAlone("rt-warm-r")
	redeemBatch("rt-warm-rb-")
	mixedBatch("rt-warm-mb-")
	spreadBatch("rt-warm-sb-")
	alone("rt-warm-3")

	steps := []struct {
		name string
		run  func() int64
		want int64
	}{
		{"award alone", func() int64 { n, _ := alone("rt-1"); return n }, 2},
		{"its replay: found by the lookup sent with BEGIN, rolled back", func() int64 { n, _ := alone("rt-1"); return n }, 2},
		{"another replay: the lookup goes alone", func() int64 { n, _ := alone("rt-1"); return n }, 1},
		{"award after a replay: the lookup goes alone first", func() int64 { n, _ := alone("rt-2"); return n }, 3},
		{"award alone again", func() int64 { n, _ := alone("rt-3"); return n }, 2},
		{"batch of 8 awards", func() int64 { return batch("rt-b1-") }, 3},
		{"its replays: found by the lookup sent with BEGIN, rolled back", func() int64 { return batch("rt-b1-") }, 2},
		{"replays again: the lookup goes alone", func() int64 { return batch("rt-b1-") }, 1},
		{"batch of 8 awards after replays", func() int64 { return batch("rt-b2-") }, 4},
		{"batch of 8 awards again", func() int64 { return batch("rt-b3-") }, 3},
		// Its debit and first lots go with BEGIN, its writes with COMMIT.
		{"redemption alone", func() int64 { return redeemAlone("rt-r1") }, 2},
		// BEGIN; then each redemption's debit and lots, with the writes of the one before;
		// the last writes with COMMIT.
		{"batch of 4 redemptions", func() int64 { return redeemBatch("rt-rb1-") }, 1 + 4 + 1},
		// BEGIN; the awards, moved ahead of the redemptions, credited together; each
		// redemption's reads (the first with the awards' rows); COMMIT. In arrival order it
		// took 8: a credit per award.
		{"batch of 3 awards and 3 redemptions, interleaved", func() int64 { return mixedBatch("rt-mb1-") }, 1 + 1 + 3 + 1},
		// BEGIN; the debits and first lots of all 4 (distinct members), each under its own
		// savepoint; their writes with COMMIT. One by one it took 6.
		{"batch of 4 redemptions of 4 members", func() int64 { return spreadBatch("rt-sb1-") }, 1 + 1 + 1},
	}
	for _, st := range steps {
		if got := st.run(); got != st.want {
			t.Errorf("%s: %d round trips, want %d", st.name, got, st.want)
		}
	}
	e.wantBalance(t, "RT-1", 6*10-2-8-6, 0) // six awards of 10; redemptions of 1: two alone, eight in batches of 4, six in mixed batches
}
