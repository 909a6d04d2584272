package gateway_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/gateway/gatewaytest"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

func TestRefusedCallersNeverReachTheLedger(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	foreignCA, err := devca.New("someone else's CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	foreignCert, err := foreignCA.IssueClient(string(tlsconfig.RolePartner), gatewaytest.AcmeAir, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// A client offers only certificates whose issuer the server's request names; this one
	// insists, as an attacker would.
	foreignTLS := env.ClientTLS()
	foreignTLS.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &foreignCert, nil }
	tests := []struct {
		name       string
		client     coalitionv1.PointsServiceClient
		wantCode   codes.Code
		wantReason string
	}{
		// The handshake fails (TLS 1.3: after the client thinks it is done), so the
		// connection never carries an RPC.
		{"no client certificate", env.Dial(t, env.ClientTLS()), codes.Unavailable, ""},
		{"certificate from another CA", env.Dial(t, foreignTLS), codes.Unavailable, ""},
		{"unknown role", env.Client(t, "auditor", "eve"), codes.Unauthenticated, "UNAUTHENTICATED"},
		{"finance", env.Finance, codes.PermissionDenied, "ROLE_NOT_ALLOWED"},
		{"operator", env.Operator, codes.PermissionDenied, "ROLE_NOT_ALLOWED"},
		{"unregistered partner", env.Client(t, tlsconfig.RolePartner, "ghost-air"), codes.PermissionDenied, "PARTNER_UNKNOWN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			_, err := tt.client.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "k1", MemberId: "member-1", Points: 100})
			wantStatus(t, err, tt.wantCode, tt.wantReason)
			_, err = tt.client.GetBalance(ctx, &coalitionv1.GetBalanceRequest{MemberId: "member-1"})
			wantStatus(t, err, tt.wantCode, tt.wantReason)
			t.Logf("refused with: %v", err)
		})
	}
	if n := env.LedgerCalls(); n != 0 {
		t.Errorf("ledger called %d times by refused callers, want 0", n)
	}
	if n := queryInt(t, env.DatabaseURL, "SELECT count(*) FROM transactions"); n != 0 {
		t.Errorf("%d transactions written by refused callers, want 0", n)
	}
}

// callUntil calls fn until its error has code and reason, or fails t after a bound.
func callUntil(t *testing.T, fn func(ctx context.Context) error, code codes.Code, reason string) {
	t.Helper()
	const bound = 50 * gatewaytest.PartnerCacheTTL
	deadline := time.Now().Add(bound)
	for {
		err := fn(testContext(t))
		if status.Code(err) == code && gateway.ReasonOf(err) == reason {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s still got %v, want %s %q", bound, err, code, reason)
		}
		time.Sleep(gatewaytest.PartnerCacheTTL / 10)
	}
}

func TestSuspendedPartnerIsRefusedUntilResumed(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := testContext(t)
	const member = "member-1"
	award(t, env.AcmeAir, "award-1", member, 100)
	getBalance := func(ctx context.Context) error {
		_, err := env.AcmeAir.GetBalance(ctx, &coalitionv1.GetBalanceRequest{MemberId: member})
		return err
	}

	suspended := settlement.Partner{ID: gatewaytest.AcmeAir, Name: gatewaytest.AcmeAir, Status: settlement.PartnerSuspended}
	if err := env.Store.UpsertPartner(ctx, suspended); err != nil {
		t.Fatalf("UpsertPartner: %v", err)
	}
	callUntil(t, getBalance, codes.PermissionDenied, "PARTNER_SUSPENDED")
	calls := env.LedgerCalls()
	_, err := env.AcmeAir.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "award-2", MemberId: member, Points: 100})
	wantStatus(t, err, codes.PermissionDenied, "PARTNER_SUSPENDED")
	if n := env.LedgerCalls() - calls; n != 0 {
		t.Errorf("a suspended partner's award made %d ledger calls, want 0", n)
	}
	wantAvailable(t, env.BeanCoffee, member, 100) // other partners carry on

	active := settlement.Partner{ID: gatewaytest.AcmeAir, Name: gatewaytest.AcmeAir, Status: settlement.PartnerActive}
	if err := env.Store.UpsertPartner(ctx, active); err != nil {
		t.Fatalf("UpsertPartner: %v", err)
	}
	callUntil(t, getBalance, codes.OK, "")
	if got := award(t, env.AcmeAir, "award-2", member, 100); got.GetBalance().GetAvailable() != 200 || got.GetReplayed() {
		t.Errorf("award after resume: available %d replayed %t, want 200 false", got.GetBalance().GetAvailable(), got.GetReplayed())
	}
}
