package partners_test

import (
	"testing"
	"time"

	"github.com/coalitionexchange/coalition/partners"
	"github.com/coalitionexchange/coalition/partners/partnersim"
	"github.com/coalitionexchange/coalition/partners/partnerstest"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// agree checks that what the member lost in the books, at the partner's ratio, is exactly what
// the partner credited, and that nothing stays held.
func agree(t *testing.T, env *partnerstest.Env, sim *partnersim.Sim, member string, awarded, ratioUnits, ratioPoints int64) {
	t.Helper()
	posted, held := balance(t, env, member)
	if held != 0 {
		t.Errorf("%s: %d points still held, want 0", member, held)
	}
	taken := awarded - posted
	if got, want := sim.CreditedUnits(member), taken*ratioUnits/ratioPoints; got != want {
		t.Errorf("%s: partner credited %d units, want %d (= %d points taken at %d:%d)", member, got, want, taken, ratioUnits, ratioPoints)
	}
	t.Logf("%s: points taken %d, partner units %d", member, taken, sim.CreditedUnits(member))
}

// TestExchangeOut: success, definite rejection, timeout then resolved, and breaker open; in
// every path the member's points and the partner's units agree at the end.
func TestExchangeOut(t *testing.T) {
	env := partnerstest.Start(t, partnerstest.Options{
		Breaker:   partners.BreakerSettings{FailureThreshold: 3, OpenTimeout: 300 * time.Millisecond},
		Retry:     partners.RetrySettings{BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond},
		Exchanger: partners.ExchangerConfig{CallBudget: 600 * time.Millisecond, ResolveInterval: 50 * time.Millisecond, ResolveBackoffBase: 50 * time.Millisecond, ResolveBackoffMax: 200 * time.Millisecond},
	})
	ctx := ctxFor(t, 2*time.Minute)
	acme := env.StartSim(t, settlement.PartnerEndpoint{PartnerID: partnerstest.AcmeAir, RatioUnits: 3, RatioPoints: 2}, partnersim.Config{})
	city := env.StartSim(t, settlement.PartnerEndpoint{PartnerID: partnerstest.CityFuel, ExchangeTimeout: 100 * time.Millisecond}, partnersim.Config{HangRate: 1})
	for _, m := range []string{"X-OK", partnersim.RejectPrefix + "-1", "X-HANG", "X-OPEN"} {
		award(t, env, partnerstest.BeanCoffee, m, 1000)
	}

	t.Run("success", func(t *testing.T) {
		x, err := exchangeOut(ctx, env, "ok-1", "X-OK", partnerstest.AcmeAir, 400)
		if err != nil || x.GetState() != coalitionv1.ExchangeState_EXCHANGE_STATE_COMPLETED || x.GetUnits() != 600 {
			t.Fatalf("ExchangeOut: got %v %v, want COMPLETED with 600 units", x, err)
		}
		again, err := env.Exchange.ExchangeOut(ctx, &coalitionv1.ExchangeOutRequest{IdempotencyKey: "ok-1", MemberId: "X-OK", ToPartner: partnerstest.AcmeAir, Points: 400})
		if err != nil || !again.GetReplayed() || again.GetExchange().GetId() != x.GetId() {
			t.Errorf("retry with the same key: got %v %v, want the same exchange, replayed", again, err)
		}
		if _, err := exchangeOut(ctx, env, "ok-1", "X-OK", partnerstest.AcmeAir, 402); err == nil {
			t.Error("same key, other points: got success, want IDEMPOTENCY_KEY_REUSED")
		}
		if _, err := exchangeOut(ctx, env, "ok-odd", "X-OK", partnerstest.AcmeAir, 3); err == nil {
			t.Error("3 points at 3:2: got success, want INVALID_ARGUMENT")
		}
		agree(t, env, acme, "X-OK", 1000, 3, 2)
	})

	t.Run("definite rejection", func(t *testing.T) {
		member := partnersim.RejectPrefix + "-1"
		x, err := exchangeOut(ctx, env, "rej-1", member, partnerstest.AcmeAir, 200)
		if err != nil || x.GetState() != coalitionv1.ExchangeState_EXCHANGE_STATE_REJECTED {
			t.Fatalf("ExchangeOut: got %v %v, want REJECTED", x, err)
		}
		if posted, _ := balance(t, env, member); posted != 1000 {
			t.Errorf("after a refusal: posted %d, want 1000 (hold voided)", posted)
		}
		agree(t, env, acme, member, 1000, 3, 2)
	})

	t.Run("timeout then resolved", func(t *testing.T) {
		x, err := exchangeOut(ctx, env, "hang-1", "X-HANG", partnerstest.CityFuel, 250)
		if err != nil || x.GetState() != coalitionv1.ExchangeState_EXCHANGE_STATE_PENDING {
			t.Fatalf("ExchangeOut to a hanging partner: got %v %v, want PENDING", x, err)
		}
		if _, held := balance(t, env, "X-HANG"); held != 250 {
			t.Errorf("while PENDING: held %d, want 250", held)
		}
		t.Logf("pending after %d attempts: %s", x.GetAttempts(), x.GetDetail())
		city.SetHangRate(0) // the partner recovers; it had applied the credit already
		done := waitExchange(t, env, x.GetId(), 20*time.Second)
		if done.GetState() != coalitionv1.ExchangeState_EXCHANGE_STATE_COMPLETED {
			t.Fatalf("resolved exchange: %v, want COMPLETED", done)
		}
		agree(t, env, city, "X-HANG", 1000, 1, 1)
	})

	t.Run("breaker open", func(t *testing.T) {
		bean := env.StartSim(t, settlement.PartnerEndpoint{PartnerID: partnerstest.BeanCoffee}, partnersim.Config{FailRate: 1})
		i := 0
		waitFor(t, 10*time.Second, "bean-coffee's breaker opens", func() bool {
			i++
			_, err := exchangeOut(ctx, env, key("open", i), "X-OPEN", partnerstest.BeanCoffee, 10)
			return err != nil
		})
		_, heldBefore := balance(t, env, "X-OPEN")
		_, err := exchangeOut(ctx, env, "open-refused", "X-OPEN", partnerstest.BeanCoffee, 10)
		requireUnavailable(t, err)
		if _, held := balance(t, env, "X-OPEN"); held != heldBefore {
			t.Errorf("breaker open: held %d, want %d (nothing held)", held, heldBefore)
		}
		bean.SetFailRate(0)
		waitFor(t, 20*time.Second, "pending exchanges resolved", func() bool { _, held := balance(t, env, "X-OPEN"); return held == 0 })
		agree(t, env, bean, "X-OPEN", 1000, 1, 1)
	})
}
