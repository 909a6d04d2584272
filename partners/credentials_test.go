package partners_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/coalitionexchange/coalition/partners/partnersim"
	"github.com/coalitionexchange/coalition/partners/partnerstest"
	partnerv1 "github.com/coalitionexchange/coalition/proto/coalition/partner/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// authRecorder is a partner program that records the authorization metadata of each call and
// otherwise behaves like the partner-sim.
type authRecorder struct {
	partnerv1.UnimplementedPartnerProgramServiceServer
	sim  *partnersim.Sim
	mu   sync.Mutex
	seen []string
}

func (a *authRecorder) record(ctx context.Context) {
	md, _ := metadata.FromIncomingContext(ctx)
	a.mu.Lock()
	a.seen = append(a.seen, md.Get("authorization")...)
	a.mu.Unlock()
}

func (a *authRecorder) CreditExchange(ctx context.Context, req *partnerv1.CreditExchangeRequest) (*partnerv1.CreditExchangeResponse, error) {
	a.record(ctx)
	return a.sim.CreditExchange(ctx, req)
}

// TestCallsCarryPartnerCredentials: the credentials from the CredentialSource (Vault KV in
// production) reach the partner on its calls, read once per refresh, and the last good ones
// keep being sent when the source fails.
func TestCallsCarryPartnerCredentials(t *testing.T) {
	var reads atomic.Int64
	var failing atomic.Bool
	env := partnerstest.Start(t, partnerstest.Options{NoDispatcher: true, NoResolver: true,
		Credentials: func(_ context.Context, partnerID string) (map[string]string, error) {
			reads.Add(1)
			if failing.Load() {
				return nil, errors.New("vault unreachable")
			}
			return map[string]string{"authorization": "Bearer key-of-" + partnerID}, nil
		}})
	sim, err := partnersim.New(partnersim.Config{PartnerID: partnerstest.AcmeAir})
	if err != nil {
		t.Fatal(err)
	}
	rec := &authRecorder{sim: sim}
	tlsCfg, err := partnersim.ServerTLS(env.CA, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	partnerv1.RegisterPartnerProgramServiceServer(gs, rec)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	ep := settlement.PartnerEndpoint{PartnerID: partnerstest.AcmeAir, Endpoint: lis.Addr().String(), ServerName: "localhost"}.WithDefaults()
	ctx := ctxFor(t, time.Minute)
	if _, err := env.Store.SetPartnerEndpoint(ctx, ep, time.Now()); err != nil {
		t.Fatal(err)
	}
	award(t, env, partnerstest.AcmeAir, "CRED-1", 100)
	for i, fail := range []bool{false, true} {
		failing.Store(fail)
		if x, err := exchangeOut(ctx, env, key("cred", i), "CRED-1", partnerstest.AcmeAir, 10); err != nil {
			t.Fatalf("exchange %d: %v %v", i, x, err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.seen) != 2 || rec.seen[0] != "Bearer key-of-acme-air" || rec.seen[1] != rec.seen[0] {
		t.Errorf("partner saw authorization %q, want the key on both calls (the second with the source failing)", rec.seen)
	}
	if reads.Load() != 1 {
		t.Errorf("credentials read %d times, want once per refresh window", reads.Load())
	}
}
