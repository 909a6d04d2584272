package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/gatewaytest"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// A streaming RPC's errors reach the caller as typed statuses, as a unary call's do, and the
// call is counted: a validation error is INVALID_ARGUMENT with its BadRequest field, a domain
// error its own code and reason, never UNKNOWN with raw text.
func TestStreamErrorsAreTypedAndCounted(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t, func(c *gateway.Config) { c.Settlements = c.Partners.(gateway.Settlements) })
	ctx := testContext(t)
	submit := func(role tlsconfig.Role, name string, req *coalitionv1.SubmitPartnerRecordsRequest) error {
		t.Helper()
		c := coalitionv1.NewSettlementServiceClient(env.Conn(t, env.IdentityTLS(t, role, name)))
		stream, err := c.SubmitPartnerRecords(ctx)
		if err != nil {
			t.Fatalf("open SubmitPartnerRecords: %v", err)
		}
		if err := stream.Send(req); err != nil {
			t.Fatalf("send: %v", err)
		}
		_, err = stream.CloseAndRecv()
		return err
	}
	record := &coalitionv1.PartnerRecord{Reference: "r1", Kind: "award", MemberId: "member-1", Points: 10, OccurredAt: timestamppb.Now()}

	// Finance must name the partner.
	err := submit(tlsconfig.RoleFinance, "books", &coalitionv1.SubmitPartnerRecordsRequest{RunId: 1, Records: []*coalitionv1.PartnerRecord{record}})
	st := wantStatus(t, err, codes.InvalidArgument, gateway.ReasonInvalidRequest)
	if fields := badRequestFields(st); len(fields) != 1 || fields[0] != "partner_id" {
		t.Errorf("BadRequest fields %v, want [partner_id]", fields)
	}
	// No such run.
	err = submit(tlsconfig.RolePartner, gatewaytest.AcmeAir, &coalitionv1.SubmitPartnerRecordsRequest{RunId: 999, Records: []*coalitionv1.PartnerRecord{record}})
	wantStatus(t, err, codes.NotFound, "RUN_NOT_FOUND")

	code, body := httpGet(t, env.HTTPURL+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d", code)
	}
	for _, want := range []string{
		`coalition_grpc_requests_total{code="InvalidArgument",method="SubmitPartnerRecords",partner=""} 1`,
		`coalition_grpc_requests_total{code="NotFound",method="SubmitPartnerRecords",partner="acme-air"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
