package gateway_test

import (
	"fmt"
	"maps"
	"sync"
	"testing"

	"google.golang.org/grpc/status"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/gatewaytest"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// The must-show race: a member with 100 points and 64 concurrent spends of 10.
const (
	raceRounds      = 20
	raceCalls       = 64
	racePoints      = 100
	racePointsEach  = 10
	raceWinners     = racePoints / racePointsEach
	stormKeys       = 20
	stormConcurrent = 3 // the first request and two duplicates at once
	stormLater      = 3 // duplicates sent one by one after the first completed
)

// concurrently runs fn(0..n-1) in n goroutines released together and returns their errors.
func concurrently(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// outcome names a call's result as "OK" or "<code> <reason>".
func outcome(err error) string {
	if err == nil {
		return "OK"
	}
	return status.Code(err).String() + " " + gateway.ReasonOf(err)
}

func tally(errs []error) map[string]int {
	counts := map[string]int{}
	for _, err := range errs {
		counts[outcome(err)]++
	}
	return counts
}

var wantRace = map[string]int{"OK": raceWinners, "FailedPrecondition INSUFFICIENT_POINTS": raceCalls - raceWinners}

func TestConcurrentRedeemsNeverOverspend(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := testContext(t)
	for round := range raceRounds {
		member := fmt.Sprintf("member-redeem-%d", round)
		award(t, env.AcmeAir, "award-"+member, member, racePoints)
		errs := concurrently(raceCalls, func(i int) error {
			_, err := env.BeanCoffee.Redeem(ctx, &coalitionv1.RedeemRequest{
				IdempotencyKey: fmt.Sprintf("redeem-%d-%d", round, i), MemberId: member, Points: racePointsEach})
			return err
		})
		if got := tally(errs); !maps.Equal(got, wantRace) {
			t.Errorf("round %d: outcomes %v, want %v", round, got, wantRace)
		}
		if b := balance(t, env.BeanCoffee, member); b.GetAvailable() != 0 || b.GetPosted() != 0 {
			t.Errorf("round %d: balance %v, want nothing left", round, b)
		}
	}
	env.Verify(t)
}

func TestConcurrentHoldsNeverOverspend(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := testContext(t)
	for round := range raceRounds {
		member := fmt.Sprintf("member-hold-%d", round)
		award(t, env.AcmeAir, "award-"+member, member, racePoints)
		holds := make([]string, raceCalls)
		errs := concurrently(raceCalls, func(i int) error {
			resp, err := env.BeanCoffee.AuthorizeRedemption(ctx, &coalitionv1.AuthorizeRedemptionRequest{
				IdempotencyKey: fmt.Sprintf("auth-%d-%d", round, i), MemberId: member, Points: racePointsEach})
			holds[i] = resp.GetHold().GetId()
			return err
		})
		if got := tally(errs); !maps.Equal(got, wantRace) {
			t.Errorf("round %d: authorize outcomes %v, want %v", round, got, wantRace)
		}
		if b := balance(t, env.BeanCoffee, member); b.GetAvailable() != 0 || b.GetHeld() != racePoints {
			t.Errorf("round %d: balance after authorizing %v, want all %d points held", round, b, racePoints)
		}
		errs = concurrently(raceCalls, func(i int) error {
			if holds[i] == "" {
				return nil
			}
			_, err := env.BeanCoffee.CaptureRedemption(ctx, &coalitionv1.CaptureRedemptionRequest{
				IdempotencyKey: fmt.Sprintf("capture-%d-%d", round, i), HoldId: holds[i]})
			return err
		})
		if got, want := tally(errs), map[string]int{"OK": raceCalls}; !maps.Equal(got, want) {
			t.Errorf("round %d: capture outcomes %v, want all OK", round, got)
		}
		if b := balance(t, env.BeanCoffee, member); b.GetAvailable() != 0 || b.GetPosted() != 0 || b.GetHeld() != 0 {
			t.Errorf("round %d: balance after capturing %v, want nothing left", round, b)
		}
	}
	env.Verify(t)
}

// stormResult is one send of a storm request.
type stormResult struct {
	resp *coalitionv1.AwardResponse
	err  error
}

// TestDuplicateStormHasOneEffectPerKey sends every request five times: twice concurrently with
// the first, then three times after it completed.
func TestDuplicateStormHasOneEffectPerKey(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := testContext(t)
	request := func(k int) *coalitionv1.AwardRequest {
		return &coalitionv1.AwardRequest{IdempotencyKey: fmt.Sprintf("storm-%02d", k), MemberId: fmt.Sprintf("member-storm-%02d", k), Points: int64(10 + k)}
	}
	results := make([][]stormResult, stormKeys)
	for k := range results {
		results[k] = make([]stormResult, stormConcurrent+stormLater)
	}
	concurrently(stormKeys*stormConcurrent, func(i int) error {
		k, n := i/stormConcurrent, i%stormConcurrent
		resp, err := env.AcmeAir.Award(ctx, request(k))
		results[k][n] = stormResult{resp, err}
		return nil
	})
	concurrently(stormKeys, func(k int) error {
		for n := stormConcurrent; n < stormConcurrent+stormLater; n++ {
			resp, err := env.AcmeAir.Award(ctx, request(k))
			results[k][n] = stormResult{resp, err}
		}
		return nil
	})

	ids := make([]string, stormKeys)
	for k, sends := range results {
		ids[k] = checkStorm(t, request(k).GetIdempotencyKey(), sends)
		wantAvailable(t, env.AcmeAir, request(k).GetMemberId(), request(k).GetPoints())
	}
	if n := queryInt(t, env.DatabaseURL, `SELECT count(*) FROM transactions WHERE partner_id = $1`, gatewaytest.AcmeAir); n != stormKeys {
		t.Errorf("%d transactions, want one per key (%d)", n, stormKeys)
	}
	if n := queryInt(t, env.DatabaseURL, `SELECT count(*) FROM (SELECT idempotency_key FROM transactions
		GROUP BY partner_id, idempotency_key HAVING count(*) > 1) dup`); n != 0 {
		t.Errorf("%d keys with more than one effect, want 0", n)
	}

	// The same key from another partner is that partner's own key: a second, separate effect.
	other, err := env.BeanCoffee.Award(ctx, request(0))
	if err != nil {
		t.Fatalf("bean-coffee Award with acme-air's key: %v", err)
	}
	if other.GetReplayed() || other.GetTransaction().GetId() == ids[0] {
		t.Errorf("bean-coffee's award: replayed %t id %s, want a new effect (acme-air's id %s)",
			other.GetReplayed(), other.GetTransaction().GetId(), ids[0])
	}
	if n := queryInt(t, env.DatabaseURL, `SELECT count(DISTINCT id) FROM transactions WHERE idempotency_key = $1`, request(0).GetIdempotencyKey()); n != 2 {
		t.Errorf("key %s has %d effects across partners, want 2", request(0).GetIdempotencyKey(), n)
	}
	wantAvailable(t, env.AcmeAir, request(0).GetMemberId(), 2*request(0).GetPoints())
	env.Verify(t)
}

// checkStorm checks the five sends of one key: one effect, every success with its transaction
// id, concurrent duplicates replayed or refused as in flight, later ones replayed. It returns
// the transaction id.
func checkStorm(t *testing.T, key string, sends []stormResult) string {
	t.Helper()
	effects, id := 0, ""
	for n, s := range sends {
		if s.err != nil {
			if n >= stormConcurrent || outcome(s.err) != "Aborted IDEMPOTENCY_KEY_IN_FLIGHT" {
				t.Errorf("key %s send %d: %s, want OK", key, n, outcome(s.err))
			}
			continue
		}
		if !s.resp.GetReplayed() {
			effects++
		}
		if id == "" {
			id = s.resp.GetTransaction().GetId()
		}
		if got := s.resp.GetTransaction().GetId(); got != id {
			t.Errorf("key %s send %d: transaction %s, want %s like the others", key, n, got, id)
		}
		if n >= stormConcurrent && !s.resp.GetReplayed() {
			t.Errorf("key %s send %d after completion: not a replay", key, n)
		}
	}
	if effects != 1 {
		t.Errorf("key %s: %d responses were not replays, want exactly 1", key, effects)
	}
	return id
}
