package partners_test

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	"github.com/coalitionexchange/coalition/partners"
	"github.com/coalitionexchange/coalition/partners/partnersim"
	"github.com/coalitionexchange/coalition/partners/partnerstest"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// awardMany has partner award member i (of members) n times, the j-th award j+1 points, each
// member's awards in order; members run concurrently.
func awardMany(t *testing.T, env *partnerstest.Env, partner string, members, n int) {
	t.Helper()
	ctx := ctxFor(t, 5*time.Minute)
	client := env.Points(t, partner)
	var wg sync.WaitGroup
	for m := range members {
		wg.Go(func() {
			member := key("OB", m)
			for j := range n {
				err := awardRetrying(ctx, client, &coalitionv1.AwardRequest{IdempotencyKey: key(member, j), MemberId: member, Points: int64(j + 1)})
				if err != nil {
					t.Errorf("award %s #%d: %v", member, j, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// checkApplied: every event applied exactly once, and per member in the order of the awards.
func checkApplied(t *testing.T, applied []partnersim.Event, want int) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int64{}
	for _, e := range applied {
		if seen[e.ID] {
			t.Errorf("event %s applied twice", e.ID)
		}
		seen[e.ID] = true
		if e.Points != last[e.MemberID]+1 {
			t.Errorf("member %s: event for award of %d points after %d: out of order", e.MemberID, e.Points, last[e.MemberID])
		}
		last[e.MemberID] = e.Points
	}
	if len(seen) != want {
		t.Errorf("distinct events applied: got %d, want %d", len(seen), want)
	}
}

func outboxCount(t *testing.T, env *partnerstest.Env, partner string, state settlement.OutboxState) int {
	t.Helper()
	events, err := env.Store.ListOutbox(ctxFor(t, 30*time.Second), partner, state, 1000)
	if err != nil {
		t.Fatalf("ListOutbox: %v", err)
	}
	return len(events)
}

// TestOutboxDeliversAfterOutage: 1,000 events produced while the partner is down are all
// delivered after it comes back, each applied exactly once, in order per member.
func TestOutboxDeliversAfterOutage(t *testing.T) {
	env := partnerstest.Start(t, partnerstest.Options{
		Breaker: partners.BreakerSettings{FailureThreshold: 3, OpenTimeout: 300 * time.Millisecond},
		Dispatcher: partners.DispatcherConfig{PollInterval: 50 * time.Millisecond, BackoffBase: 50 * time.Millisecond,
			BackoffMax: 200 * time.Millisecond, MaxAttempts: 10_000},
	})
	sim := env.StartSim(t, settlement.PartnerEndpoint{PartnerID: partnerstest.AcmeAir, Events: []string{settlement.EventPointsAwardedElsewhere}},
		partnersim.Config{FailRate: 1})
	const members, perMember = 20, 50
	awardMany(t, env, partnerstest.BeanCoffee, members, perMember)
	awardMany(t, env, partnerstest.AcmeAir, 1, 3) // its own awards are not "elsewhere"
	if n := len(sim.Applied()); n != 0 {
		t.Fatalf("applied while down: %d", n)
	}
	if got := outboxCount(t, env, partnerstest.AcmeAir, settlement.OutboxPending); got != members*perMember {
		t.Fatalf("pending while down: got %d, want %d", got, members*perMember)
	}
	t.Logf("partner down: %d events pending, %d calls refused by the partner, breaker %s", members*perMember, sim.Calls(),
		env.Registry.State(partnerstest.AcmeAir, partners.OpDeliverEvents))
	up := time.Now()
	sim.SetFailRate(0)
	waitFor(t, time.Minute, "all events delivered", func() bool { return len(sim.Applied()) >= members*perMember })
	t.Logf("partner up: %d events delivered in %s, %d redeliveries refused as duplicates",
		len(sim.Applied()), time.Since(up).Round(time.Millisecond), sim.Redeliveries())
	checkApplied(t, sim.Applied(), members*perMember)
	waitFor(t, 10*time.Second, "outbox drained", func() bool { return outboxCount(t, env, partnerstest.AcmeAir, settlement.OutboxPending) == 0 })
	if got := outboxCount(t, env, partnerstest.AcmeAir, settlement.OutboxDelivered); got != members*perMember {
		t.Errorf("delivered rows: got %d, want %d", got, members*perMember)
	}
}

// TestOutboxRedeemedGoesToIssuers: points.redeemed reaches the issuers of the lots consumed,
// only them; dead events are listed and replayed through AdminService.
func TestOutboxRedeemedGoesToIssuersDeadAndReplay(t *testing.T) {
	env := partnerstest.Start(t, partnerstest.Options{
		Breaker:    partners.BreakerSettings{FailureThreshold: 1_000_000},
		Dispatcher: partners.DispatcherConfig{PollInterval: 50 * time.Millisecond, BackoffBase: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, MaxAttempts: 2},
	})
	ctx := ctxFor(t, time.Minute)
	sim := env.StartSim(t, settlement.PartnerEndpoint{PartnerID: partnerstest.AcmeAir, Events: []string{settlement.EventPointsRedeemed}},
		partnersim.Config{FailRate: 1})
	award(t, env, partnerstest.AcmeAir, "R-1", 100)
	award(t, env, partnerstest.CityFuel, "R-2", 100)
	for _, m := range []string{"R-1", "R-2"} {
		if _, err := env.Points(t, partnerstest.BeanCoffee).Redeem(ctx, &coalitionv1.RedeemRequest{IdempotencyKey: "redeem-" + m, MemberId: m, Points: 40}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, "event dead after 2 attempts", func() bool { return outboxCount(t, env, partnerstest.AcmeAir, settlement.OutboxDead) == 1 })
	// Finance sees and replays dead events as operators do (DESIGN §6); partners do not, and
	// finance gets no other admin call.
	finance := coalitionv1.NewAdminServiceClient(env.Conn(t, tlsconfig.RoleFinance, "books"))
	if _, err := coalitionv1.NewAdminServiceClient(env.Conn(t, tlsconfig.RolePartner, partnerstest.AcmeAir)).ListOutboxEvents(ctx,
		&coalitionv1.ListOutboxEventsRequest{PartnerId: partnerstest.AcmeAir}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("a partner listing the outbox: got %v, want PERMISSION_DENIED", err)
	}
	if _, err := finance.ListPartners(ctx, &coalitionv1.ListPartnersRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("finance listing partners through AdminService: got %v, want PERMISSION_DENIED", err)
	}
	dead, err := finance.ListOutboxEvents(ctx, &coalitionv1.ListOutboxEventsRequest{PartnerId: partnerstest.AcmeAir})
	if err != nil || len(dead.GetEvents()) != 1 || dead.GetEvents()[0].GetMemberId() != "R-1" || dead.GetEvents()[0].GetAttempts() != 2 {
		t.Fatalf("dead events: got %v %v, want R-1's redemption after 2 attempts (R-2's points were city-fuel's)", dead.GetEvents(), err)
	}
	sim.SetFailRate(0)
	replayed, err := finance.ReplayOutboxEvents(ctx, &coalitionv1.ReplayOutboxEventsRequest{PartnerId: partnerstest.AcmeAir})
	if err != nil || replayed.GetReplayed() != 1 {
		t.Fatalf("replay: got %v %v, want 1", replayed, err)
	}
	waitFor(t, 20*time.Second, "replayed event delivered", func() bool { return len(sim.Applied()) == 1 })
	if e := sim.Applied()[0]; e.Type != settlement.EventPointsRedeemed || e.MemberID != "R-1" || e.Points != 40 {
		t.Errorf("applied %+v, want points.redeemed of 40 for R-1", e)
	}
}
