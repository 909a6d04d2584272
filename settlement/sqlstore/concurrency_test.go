package sqlstore_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// The must-show: a member with 100 points, 64 concurrent requests of 10.
const (
	raceRounds  = 20
	raceWorkers = 64
	racePoints  = 100
	raceEach    = 10
	raceWinners = racePoints / raceEach
)

// tally counts outcomes of concurrent requests by error.
type tally struct {
	ok, insufficient int
	others           []error
}

func count(errs []error) tally {
	var t tally
	for _, err := range errs {
		switch {
		case err == nil:
			t.ok++
		case errors.Is(err, settlement.ErrInsufficientPoints):
			t.insufficient++
		default:
			t.others = append(t.others, err)
		}
	}
	return t
}

// concurrently runs fn(i) for i in [0, n) on n goroutines released together.
func concurrently(n int, fn func(i int)) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			fn(i)
		})
	}
	close(start)
	wg.Wait()
}

func newRaceEnv(t *testing.T) (*env, *atomic.Int64) {
	var retries atomic.Int64
	e := newEnv(t, envConfig{maxConns: 24, runner: sqlstore.RunnerConfig{
		OnRetry: func(int, error) { retries.Add(1) },
	}})
	return e, &retries
}

func TestConcurrentRedeemsNeverOverdraw(t *testing.T) {
	e, retries := newRaceEnv(t)
	ctx := ctxFor(t)
	for round := range raceRounds {
		member := fmt.Sprintf("m-redeem-%d", round)
		e.must(t, award(acme, member, member+"-award", racePoints))
		errs := make([]error, raceWorkers)
		concurrently(raceWorkers, func(i int) {
			_, errs[i] = e.ledger.Apply(ctx, redeem(bean, member, fmt.Sprintf("%s-r%d", member, i), raceEach))
		})
		got := count(errs)
		if got.ok != raceWinners || got.insufficient != raceWorkers-raceWinners || len(got.others) != 0 {
			t.Fatalf("round %d: got %d ok, %d INSUFFICIENT_POINTS, others %v; want %d, %d, none",
				round, got.ok, got.insufficient, got.others, raceWinners, raceWorkers-raceWinners)
		}
		e.wantBalance(t, member, 0, 0)
		if n := e.queryInt(t, `SELECT count(*) FROM transactions WHERE member_id = $1 AND kind = 'redeem'`, member); n != raceWinners {
			t.Errorf("round %d: redeem transactions: got %d, want %d", round, n, raceWinners)
		}
		e.verify(t)
	}
	t.Logf("%d rounds of %d redeems: %d retries", raceRounds, raceWorkers, retries.Load())
}

func TestConcurrentHoldsNeverOverdraw(t *testing.T) {
	e, retries := newRaceEnv(t)
	ctx := ctxFor(t)
	for round := range raceRounds {
		member := fmt.Sprintf("m-hold-%d", round)
		e.must(t, award(acme, member, member+"-award", racePoints))
		errs := make([]error, raceWorkers)
		holds := make([]string, raceWorkers)
		concurrently(raceWorkers, func(i int) {
			out, err := e.ledger.Apply(ctx, authorize(bean, member, fmt.Sprintf("%s-h%d", member, i), raceEach))
			errs[i] = err
			if err == nil {
				holds[i] = out.Hold.ID
			}
		})
		got := count(errs)
		if got.ok != raceWinners || got.insufficient != raceWorkers-raceWinners || len(got.others) != 0 {
			t.Fatalf("round %d: authorize: got %d ok, %d INSUFFICIENT_POINTS, others %v; want %d, %d, none",
				round, got.ok, got.insufficient, got.others, raceWinners, raceWorkers-raceWinners)
		}
		e.wantBalance(t, member, racePoints, racePoints)

		captureErrs := make([]error, raceWorkers)
		concurrently(raceWorkers, func(i int) {
			if holds[i] != "" {
				_, captureErrs[i] = e.ledger.Apply(ctx, capture(bean, fmt.Sprintf("%s-c%d", member, i), holds[i], 0))
			}
		})
		for i, err := range captureErrs {
			if err != nil {
				t.Errorf("round %d: capture of hold %d: %v", round, i, err)
			}
		}
		e.wantBalance(t, member, 0, 0)
		e.verify(t)
	}
	t.Logf("%d rounds of %d authorizations: %d retries", raceRounds, raceWorkers, retries.Load())
}

// TestConcurrentMixedTraffic interleaves every kind of command on a few members and checks
// only what must always hold: no system errors and sound books.
func TestConcurrentMixedTraffic(t *testing.T) {
	e, retries := newRaceEnv(t)
	ctx := ctxFor(t)
	members := []string{"m-a", "m-b", "m-c"}
	awards := make([]string, len(members))
	for i, m := range members {
		awards[i] = e.must(t, award(acme, m, m+"-seed", 200)).Transaction.ID
	}
	expected := []error{settlement.ErrInsufficientPoints, settlement.ErrHoldNotOpen, settlement.ErrReversalExceedsOriginal}
	errs := make([]error, raceWorkers)
	concurrently(raceWorkers, func(i int) {
		m := members[i%len(members)]
		key := fmt.Sprintf("mix-%d", i)
		var err error
		switch i % 4 {
		case 0:
			_, err = e.ledger.Apply(ctx, award(bean, m, key, 15))
		case 1:
			_, err = e.ledger.Apply(ctx, redeem(bean, m, key, 25))
		case 2:
			var out settlement.Outcome
			out, err = e.ledger.Apply(ctx, authorize(bean, m, key, 20))
			if err == nil {
				_, err = e.ledger.Apply(ctx, capture(bean, key+"-c", out.Hold.ID, 5))
			}
		case 3:
			_, err = e.ledger.Apply(ctx, reverse(acme, key, awards[i%len(members)], 10))
		}
		for _, want := range expected {
			if errors.Is(err, want) {
				err = nil
			}
		}
		errs[i] = err
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	t.Logf("%d mixed requests: %d retries", raceWorkers, retries.Load())
}
