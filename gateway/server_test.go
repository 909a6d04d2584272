package gateway_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/coalitionexchange/coalition/gateway/gatewaytest"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testContext(t), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, env.HTTPURL+path); code != http.StatusOK {
			t.Errorf("GET %s = %d %q, want 200", path, code, body)
		}
	}
}

func TestMetricsCountRequestsByMethodCodeAndPartner(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := testContext(t)
	award(t, env.AcmeAir, "award-1", "member-1", 10)
	award(t, env.AcmeAir, "award-1", "member-1", 10) // a replay is a request too
	_, err := env.BeanCoffee.Redeem(ctx, &coalitionv1.RedeemRequest{IdempotencyKey: "redeem-1", MemberId: "member-1", Points: 11})
	if err == nil {
		t.Fatal("overspending Redeem succeeded")
	}
	_, _ = env.Finance.GetBalance(ctx, &coalitionv1.GetBalanceRequest{MemberId: "member-1"})

	code, body := httpGet(t, env.HTTPURL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, want := range []string{
		`coalition_grpc_requests_total{code="OK",method="Award",partner="acme-air"} 2`,
		`coalition_grpc_requests_total{code="FailedPrecondition",method="Redeem",partner="bean-coffee"} 1`,
		`coalition_grpc_requests_total{code="PermissionDenied",method="GetBalance",partner=""} 1`,
		`coalition_grpc_request_duration_seconds_count{method="Award"} 2`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

func TestHealthAndReflectionServeEveryRole(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := testContext(t)
	health, err := healthpb.NewHealthClient(env.Conn(t, env.IdentityTLS(t, tlsconfig.RoleFinance, "books"))).
		Check(ctx, &healthpb.HealthCheckRequest{Service: coalitionv1.PointsService_ServiceDesc.ServiceName})
	if err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health check as finance = %v, %v; want SERVING", health.GetStatus(), err)
	}

	conn := env.Conn(t, env.IdentityTLS(t, tlsconfig.RoleOperator, "ops"))
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatalf("ServerReflectionInfo: %v", err)
	}
	req := &reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}
	if err := stream.Send(req); err != nil {
		t.Fatalf("reflection Send: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection Recv as operator: %v", err)
	}
	var services []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		services = append(services, s.GetName())
	}
	if !slices.Contains(services, coalitionv1.PointsService_ServiceDesc.ServiceName) {
		t.Errorf("reflection lists %q, want %s among them", services, coalitionv1.PointsService_ServiceDesc.ServiceName)
	}
	_ = stream.CloseSend()

	ghost := env.Conn(t, env.IdentityTLS(t, tlsconfig.RolePartner, "ghost-air"))
	_, err = healthpb.NewHealthClient(ghost).Check(ctx, &healthpb.HealthCheckRequest{})
	wantStatus(t, err, codes.PermissionDenied, "PARTNER_UNKNOWN")
}
