package partners_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/partners/partnerstest"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/sqlstoretest"
)

func TestMain(m *testing.M) { os.Exit(sqlstoretest.Main(m)) }

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// award credits points to member as partner through the Points API.
func award(t *testing.T, env *partnerstest.Env, partner, member string, points int64) {
	t.Helper()
	err := awardRetrying(ctxFor(t, 30*time.Second), env.Points(t, partner), &coalitionv1.AwardRequest{
		IdempotencyKey: "award-" + member, MemberId: member, Points: points, Reference: "test"})
	if err != nil {
		t.Fatalf("award %d to %s: %v", points, member, err)
	}
}

// awardRetrying retries ABORTED answers with the same key, as the API tells clients to.
func awardRetrying(ctx context.Context, c coalitionv1.PointsServiceClient, req *coalitionv1.AwardRequest) error {
	var err error
	for range 10 {
		if _, err = c.Award(ctx, req); status.Code(err) != codes.Aborted {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// balance reads a member's posted and held points from the books.
func balance(t *testing.T, env *partnerstest.Env, member string) (posted, held int64) {
	t.Helper()
	b, err := env.Store.Balance(ctxFor(t, 30*time.Second), member)
	if err != nil {
		t.Fatalf("balance %s: %v", member, err)
	}
	return b.Posted, b.Held
}

func exchangeOut(ctx context.Context, env *partnerstest.Env, key, member, to string, points int64) (*coalitionv1.Exchange, error) {
	resp, err := env.Exchange.ExchangeOut(ctx, &coalitionv1.ExchangeOutRequest{IdempotencyKey: key, MemberId: member, ToPartner: to, Points: points})
	return resp.GetExchange(), err
}

// waitFor polls cond every 20ms until it holds or bound passes.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, bound)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExchange polls GetExchange until the exchange leaves PENDING.
func waitExchange(t *testing.T, env *partnerstest.Env, id string, bound time.Duration) *coalitionv1.Exchange {
	t.Helper()
	var x *coalitionv1.Exchange
	waitFor(t, bound, "exchange "+id+" definite", func() bool {
		resp, err := env.Exchange.GetExchange(ctxFor(t, 10*time.Second), &coalitionv1.GetExchangeRequest{Id: id})
		if err != nil {
			t.Fatalf("GetExchange %s: %v", id, err)
		}
		x = resp.GetExchange()
		return x.GetState() != coalitionv1.ExchangeState_EXCHANGE_STATE_PENDING
	})
	return x
}

// requireUnavailable checks err is UNAVAILABLE PARTNER_UNAVAILABLE with a RetryInfo.
func requireUnavailable(t *testing.T, err error) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.Unavailable || gateway.ReasonOf(err) != "PARTNER_UNAVAILABLE" {
		t.Fatalf("got %v, want UNAVAILABLE PARTNER_UNAVAILABLE", err)
	}
	if gateway.RetryDelayOf(err) <= 0 {
		t.Fatalf("UNAVAILABLE without a RetryInfo: %v", st.Details())
	}
}

// p99 returns the 99th percentile of ds.
func p99(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}

// breakerState reads coalition_partner_breaker_state{partner,operation} from env's metrics.
func breakerState(t *testing.T, env *partnerstest.Env, partner, op string) float64 {
	t.Helper()
	families, err := env.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "coalition_partner_breaker_state" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["partner"] == partner && labels["operation"] == op {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no coalition_partner_breaker_state{partner=%q,operation=%q}", partner, op)
	return 0
}

func key(prefix string, i int) string { return fmt.Sprintf("%s-%d", prefix, i) }
