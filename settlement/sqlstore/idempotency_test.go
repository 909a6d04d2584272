package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// stormCommands returns n commands for one member: awards and redemptions that all fit.
func stormCommands(member string, n int) []settlement.Command {
	cmds := make([]settlement.Command, n)
	for i := range cmds {
		key := fmt.Sprintf("%s-k%d", member, i)
		if i%2 == 0 {
			cmds[i] = award(acme, member, key, 10)
		} else {
			cmds[i] = redeem(bean, member, key, 5)
		}
	}
	return cmds
}

type response struct {
	out settlement.Outcome
	err error
}

// storm sends cmd through apply together with two duplicates, then three more duplicates once
// those three have returned.
func storm(ctx context.Context, cmd settlement.Command, apply func(context.Context, settlement.Command) (settlement.Outcome, error)) []response {
	rs := make([]response, 6)
	concurrently(3, func(i int) { rs[i].out, rs[i].err = apply(ctx, cmd) })
	for i := 3; i < len(rs); i++ {
		rs[i].out, rs[i].err = apply(ctx, cmd)
	}
	return rs
}

// checkStorm checks one key's responses: exactly one first application, every other response
// a replay of it (or, when inFlightOK, ErrIdempotencyKeyInFlight), and one effect in the books.
// It returns how many responses were replays and how many ErrIdempotencyKeyInFlight.
func (e *env) checkStorm(t *testing.T, cmd settlement.Command, rs []response, inFlightOK bool) (replays, inFlight int) {
	t.Helper()
	firsts, ids := 0, map[string]bool{}
	for i, r := range rs {
		switch {
		case r.err == nil && !r.out.Replayed:
			firsts++
			ids[r.out.Transaction.ID] = true
		case r.err == nil:
			replays++
			ids[r.out.Transaction.ID] = true
		case inFlightOK && errors.Is(r.err, settlement.ErrIdempotencyKeyInFlight):
			inFlight++
		default:
			t.Errorf("%s response %d: got %v, want a replay or success", cmd.IdempotencyKey, i, r.err)
		}
	}
	if firsts != 1 || len(ids) != 1 {
		t.Errorf("%s: got %d first applications and transaction ids %v, want 1 and one id", cmd.IdempotencyKey, firsts, ids)
	}
	if n := e.queryInt(t, `SELECT count(*) FROM transactions WHERE partner_id = $1 AND idempotency_key = $2`,
		cmd.PartnerID, cmd.IdempotencyKey); n != 1 {
		t.Errorf("%s: transactions with this key: got %d, want 1", cmd.IdempotencyKey, n)
	}
	return replays, inFlight
}

func TestDuplicateStormThroughLedger(t *testing.T) {
	e := newEnv(t, envConfig{maxConns: 16})
	ctx := ctxFor(t)
	const member, n = "m-storm", 20
	e.must(t, award(acme, member, "seed", 100))
	cmds := stormCommands(member, n)
	results := make([][]response, n)
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Go(func() { results[i] = storm(ctx, cmd, e.ledger.Apply) })
	}
	wg.Wait()
	replays, inFlight := 0, 0
	for i, cmd := range cmds {
		r, f := e.checkStorm(t, cmd, results[i], true)
		replays, inFlight = replays+r, inFlight+f
	}
	t.Logf("%d keys: %d replays, %d in flight", n, replays, inFlight)
	e.wantBalance(t, member, 100+n/2*10-n/2*5, 0)
}

// TestDuplicateStormThroughStore bypasses the Ledger's in-flight guard: concurrent duplicates
// reach the database, whose unique idempotency record still allows one effect.
func TestDuplicateStormThroughStore(t *testing.T) {
	var retries atomic.Int64
	e := newEnv(t, envConfig{maxConns: 16, runner: sqlstore.RunnerConfig{OnRetry: func(int, error) { retries.Add(1) }}})
	ctx := ctxFor(t)
	const member, n = "m-storm", 20
	e.must(t, award(acme, member, "seed", 100))
	cmds := stormCommands(member, n)
	apply := func(ctx context.Context, cmd settlement.Command) (settlement.Outcome, error) {
		return e.store.Apply(ctx, cmd, settlement.Fingerprint(cmd), e.clock.Now())
	}
	results := make([][]response, n)
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Go(func() { results[i] = storm(ctx, cmd, apply) })
	}
	wg.Wait()
	for i, cmd := range cmds {
		e.checkStorm(t, cmd, results[i], false)
	}
	t.Logf("%d keys: %d retries", n, retries.Load())
	e.wantBalance(t, member, 100+n/2*10-n/2*5, 0)
}

// TestDuplicateRefusalsThroughStore: concurrent duplicates of a refused request all get the
// one recorded refusal.
func TestDuplicateRefusalsThroughStore(t *testing.T) {
	e := newEnv(t, envConfig{maxConns: 16})
	ctx := ctxFor(t)
	e.must(t, award(acme, "m-1", "seed", 10))
	cmd := redeem(bean, "m-1", "too-much", 11)
	errs := make([]error, 8)
	concurrently(len(errs), func(i int) {
		_, errs[i] = e.store.Apply(ctx, cmd, settlement.Fingerprint(cmd), e.clock.Now())
	})
	for i, err := range errs {
		if !errors.Is(err, settlement.ErrInsufficientPoints) {
			t.Errorf("response %d: got %v, want ErrInsufficientPoints", i, err)
		}
	}
	if n := e.queryInt(t, `SELECT count(*) FROM idempotency_keys WHERE key = 'too-much'`); n != 1 {
		t.Errorf("idempotency records: got %d, want 1", n)
	}
}

func TestKeysAreScopedByPartner(t *testing.T) {
	e := newEnv(t, envConfig{})
	a := e.must(t, award(acme, "m-1", "order-1", 100))
	b := e.must(t, award(bean, "m-1", "order-1", 100))
	if a.Transaction.ID == b.Transaction.ID {
		t.Errorf("transaction ids: got %s twice, want two transactions", a.Transaction.ID)
	}
	e.wantBalance(t, "m-1", 200, 0)
	if n := e.queryInt(t, `SELECT count(*) FROM transactions WHERE idempotency_key = 'order-1'`); n != 2 {
		t.Errorf("transactions with key order-1: got %d, want 2", n)
	}
	// Same key at another partner with other fields is not a reuse either.
	e.must(t, redeem(acme, "m-1", "r-1", 30))
	e.must(t, redeem(bean, "m-1", "r-1", 40))
	e.wantBalance(t, "m-1", 130, 0)
	// A key is bound to its op too: the same key for another op is a reuse.
	e.fails(t, redeem(acme, "m-1", "order-1", 100), settlement.ErrIdempotencyKeyReused)
}
