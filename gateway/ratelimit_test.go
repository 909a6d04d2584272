package gateway_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/gatewaytest"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// A partner over its rate limit is refused before the ledger, with when to retry; the other
// partners and health checks are not affected, and the refused key works once retried.
func TestPartnerRateLimit(t *testing.T) {
	t.Parallel()
	// 1 call a second, 3 at once: the 4th call of a quick burst is refused for about a second.
	env := gatewaytest.Start(t, func(c *gateway.Config) {
		c.RateLimit = gateway.RateLimit{PartnerRate: gateway.PartnerRate{PerSecond: 1, Burst: 3}}
	})
	ctx := testContext(t)
	award := func(c coalitionv1.PointsServiceClient, key string) (*coalitionv1.AwardResponse, error) {
		return c.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: key, MemberId: "member-rl", Points: 100})
	}
	for _, key := range []string{"k1", "k2", "k3"} {
		if _, err := award(env.AcmeAir, key); err != nil {
			t.Fatalf("award %s within the burst: %v", key, err)
		}
	}
	calls := env.LedgerCalls()
	_, err := award(env.AcmeAir, "k4")
	st := wantStatus(t, err, codes.ResourceExhausted, gateway.ReasonRateLimited)
	if info := errorInfo(st); info.GetMetadata()["partner"] != gatewaytest.AcmeAir || info.GetMetadata()["limit_per_second"] != "1" || info.GetMetadata()["burst"] != "3" {
		t.Errorf("ErrorInfo metadata %v: want the partner, its rate and burst", info.GetMetadata())
	}
	wait := gateway.RetryDelayOf(err)
	if wait <= 0 || wait > time.Second+time.Millisecond {
		t.Fatalf("RetryInfo delay %s: want (0, 1s]", wait)
	}
	if _, err := env.AcmeAir.GetBalance(ctx, &coalitionv1.GetBalanceRequest{MemberId: "member-rl"}); err == nil {
		t.Error("a read right after the refusal was admitted: reads must count too")
	}
	if n := env.LedgerCalls(); n != calls {
		t.Errorf("refused calls reached the ledger: %d calls, want %d", n, calls)
	}

	// Other partners have their own buckets; health checks are not limited.
	if _, err := award(env.BeanCoffee, "k1"); err != nil {
		t.Errorf("another partner's award while acme-air is limited: %v", err)
	}
	health := grpc_health_v1.NewHealthClient(env.Conn(t, env.IdentityTLS(t, tlsconfig.RolePartner, gatewaytest.AcmeAir)))
	for range 5 {
		if _, err := health.Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil {
			t.Fatalf("health check of a limited partner: %v", err)
		}
	}

	// After the delay it was told, the refused key applies once, as a first request.
	time.Sleep(wait)
	resp, err := award(env.AcmeAir, "k4")
	if err != nil {
		t.Fatalf("award k4 after %s: %v", wait, err)
	}
	if resp.GetReplayed() || resp.GetBalance().GetAvailable() != 500 {
		t.Errorf("k4 after the wait: replayed %v, available %d; want a first award and 500 (4 of acme-air, 1 of bean-coffee)", resp.GetReplayed(), resp.GetBalance().GetAvailable())
	}
	env.Verify(t)
}
