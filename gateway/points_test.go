package gateway_test

import (
	"context"
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/gatewaytest"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// testTimeout bounds every test's RPCs, so a hang fails instead of stalling the run.
const testTimeout = 60 * time.Second

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// wantStatus fails t unless err has code and ErrorInfo reason ("" for none) and returns its status.
func wantStatus(t *testing.T, err error, code codes.Code, reason string) *status.Status {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || gateway.ReasonOf(err) != reason {
		t.Errorf("got %s %q (%s), want %s %q", st.Code(), gateway.ReasonOf(err), st.Message(), code, reason)
	}
	return st
}

func errorInfo(st *status.Status) *errdetails.ErrorInfo {
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info
		}
	}
	return nil
}

// badRequestFields returns the fields a status's BadRequest names, sorted.
func badRequestFields(st *status.Status) []string {
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	slices.Sort(fields)
	return fields
}

func award(t *testing.T, c coalitionv1.PointsServiceClient, key, member string, points int64) *coalitionv1.AwardResponse {
	t.Helper()
	resp, err := c.Award(testContext(t), &coalitionv1.AwardRequest{IdempotencyKey: key, MemberId: member, Points: points})
	if err != nil {
		t.Fatalf("Award(%s, %s, %d): %v", key, member, points, err)
	}
	return resp
}

func balance(t *testing.T, c coalitionv1.PointsServiceClient, member string) *coalitionv1.Balance {
	t.Helper()
	resp, err := c.GetBalance(testContext(t), &coalitionv1.GetBalanceRequest{MemberId: member})
	if err != nil {
		t.Fatalf("GetBalance(%s): %v", member, err)
	}
	return resp.GetBalance()
}

func wantAvailable(t *testing.T, c coalitionv1.PointsServiceClient, member string, want int64) {
	t.Helper()
	if got := balance(t, c, member).GetAvailable(); got != want {
		t.Errorf("available balance of %s = %d, want %d", member, got, want)
	}
}

// queryInt runs a query returning one integer directly on the database at url.
func queryInt(t *testing.T, url, sql string, args ...any) int64 {
	t.Helper()
	ctx := testContext(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int64
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestMustShowSequence is the sequence: award, redeem, replay, key reuse, overspend,
// and a reversal of another partner's transaction.
func TestMustShowSequence(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := testContext(t)
	const member = "member-must-show"

	aw := award(t, env.AcmeAir, "award-1", member, 500)
	if aw.GetBalance().GetAvailable() != 500 || aw.GetReplayed() {
		t.Errorf("award: available %d replayed %t, want 500 false", aw.GetBalance().GetAvailable(), aw.GetReplayed())
	}
	if tx := aw.GetTransaction(); tx.GetKind() != coalitionv1.TransactionKind_TRANSACTION_KIND_AWARD ||
		tx.GetPartnerId() != gatewaytest.AcmeAir || tx.GetPoints() != 500 || tx.GetMemberId() != member {
		t.Errorf("award transaction = %v", tx)
	}

	redeem := &coalitionv1.RedeemRequest{IdempotencyKey: "redeem-1", MemberId: member, Points: 200}
	first, err := env.BeanCoffee.Redeem(ctx, redeem)
	if err != nil {
		t.Fatalf("Redeem: %v", err)
	}
	if first.GetBalance().GetAvailable() != 300 || first.GetReplayed() {
		t.Errorf("redeem: available %d replayed %t, want 300 false", first.GetBalance().GetAvailable(), first.GetReplayed())
	}

	again, err := env.BeanCoffee.Redeem(ctx, redeem)
	if err != nil {
		t.Fatalf("Redeem again: %v", err)
	}
	if !again.GetReplayed() || again.GetTransaction().GetId() != first.GetTransaction().GetId() {
		t.Errorf("redeem again: replayed %t id %s, want true %s", again.GetReplayed(), again.GetTransaction().GetId(), first.GetTransaction().GetId())
	}
	if !proto.Equal(again.GetTransaction(), first.GetTransaction()) || !proto.Equal(again.GetBalance(), first.GetBalance()) {
		t.Errorf("replay = %v, want the original %v", again, first)
	}
	wantAvailable(t, env.BeanCoffee, member, 300)

	_, err = env.BeanCoffee.Redeem(ctx, &coalitionv1.RedeemRequest{IdempotencyKey: "redeem-1", MemberId: member, Points: 201})
	wantStatus(t, err, codes.FailedPrecondition, "IDEMPOTENCY_KEY_REUSED")

	overspend := &coalitionv1.RedeemRequest{IdempotencyKey: "redeem-2", MemberId: member, Points: 301}
	_, err = env.BeanCoffee.Redeem(ctx, overspend)
	if st := wantStatus(t, err, codes.FailedPrecondition, "INSUFFICIENT_POINTS"); errorInfo(st).GetMetadata()["replayed"] != "" {
		t.Errorf("first overspend carries metadata %v, want no replayed", errorInfo(st).GetMetadata())
	}
	wantAvailable(t, env.BeanCoffee, member, 300)
	_, err = env.BeanCoffee.Redeem(ctx, overspend)
	if st := wantStatus(t, err, codes.FailedPrecondition, "INSUFFICIENT_POINTS"); errorInfo(st).GetMetadata()["replayed"] != "true" {
		t.Errorf("repeated overspend carries metadata %v, want replayed=true", errorInfo(st).GetMetadata())
	}

	_, err = env.BeanCoffee.Reverse(ctx, &coalitionv1.ReverseRequest{
		IdempotencyKey: "reverse-1", TransactionId: aw.GetTransaction().GetId(), Reason: "not ours to reverse"})
	wantStatus(t, err, codes.NotFound, "TRANSACTION_NOT_FOUND")
	wantAvailable(t, env.AcmeAir, member, 300)
	env.Verify(t)
}

// pageToken encodes raw the way the gateway's page tokens are encoded.
func pageToken(raw string) string { return base64.RawURLEncoding.EncodeToString([]byte(raw)) }

func TestInvalidRequestsWriteNothing(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	const (
		member = "member-1"
		uuid   = "0b6f3c52-6f0e-4d56-9a51-3d2b1b8f4a10"
	)
	c := env.AcmeAir
	tests := []struct {
		name       string
		call       func(ctx context.Context) error
		wantReason string
		wantFields []string
	}{
		{"idempotency key with a space", func(ctx context.Context) error {
			_, err := c.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "bad key", MemberId: member, Points: 1})
			return err
		}, "INVALID_REQUEST", []string{"idempotency_key"}},
		{"idempotency key too long", func(ctx context.Context) error {
			_, err := c.Redeem(ctx, &coalitionv1.RedeemRequest{IdempotencyKey: strings.Repeat("k", 129), MemberId: member, Points: 1})
			return err
		}, "INVALID_REQUEST", []string{"idempotency_key"}},
		{"zero points", func(ctx context.Context) error {
			_, err := c.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "k1", MemberId: member, Points: 0})
			return err
		}, "INVALID_REQUEST", []string{"points"}},
		{"negative points", func(ctx context.Context) error {
			_, err := c.Redeem(ctx, &coalitionv1.RedeemRequest{IdempotencyKey: "k2", MemberId: member, Points: -5})
			return err
		}, "INVALID_REQUEST", []string{"points"}},
		{"too many points", func(ctx context.Context) error {
			_, err := c.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "k3", MemberId: member, Points: 1_000_000_001})
			return err
		}, "INVALID_REQUEST", []string{"points"}},
		{"member id with spaces", func(ctx context.Context) error {
			_, err := c.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "k4", MemberId: "member one", Points: 1})
			return err
		}, "INVALID_REQUEST", []string{"member_id"}},
		{"every field wrong at once", func(ctx context.Context) error {
			_, err := c.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "", MemberId: "a b", Points: -1})
			return err
		}, "INVALID_REQUEST", []string{"idempotency_key", "member_id", "points"}},
		{"occurred_at in the future", func(ctx context.Context) error {
			_, err := c.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "k5", MemberId: member, Points: 1,
				OccurredAt: timestamppb.New(time.Now().Add(time.Hour))})
			return err
		}, "INVALID_REQUEST", []string{"occurred_at"}},
		{"hold_ttl of 8 days", func(ctx context.Context) error {
			_, err := c.AuthorizeRedemption(ctx, &coalitionv1.AuthorizeRedemptionRequest{IdempotencyKey: "k6", MemberId: member, Points: 1,
				HoldTtl: durationpb.New(8 * 24 * time.Hour)})
			return err
		}, "INVALID_REQUEST", []string{"hold_ttl"}},
		{"hold_ttl of zero", func(ctx context.Context) error {
			_, err := c.AuthorizeRedemption(ctx, &coalitionv1.AuthorizeRedemptionRequest{IdempotencyKey: "k7", MemberId: member, Points: 1,
				HoldTtl: durationpb.New(0)})
			return err
		}, "INVALID_REQUEST", []string{"hold_ttl"}},
		{"malformed hold_id on capture", func(ctx context.Context) error {
			_, err := c.CaptureRedemption(ctx, &coalitionv1.CaptureRedemptionRequest{IdempotencyKey: "k8", HoldId: "hold-1"})
			return err
		}, "INVALID_REQUEST", []string{"hold_id"}},
		{"uppercase hold_id on void", func(ctx context.Context) error {
			_, err := c.VoidRedemption(ctx, &coalitionv1.VoidRedemptionRequest{IdempotencyKey: "k9", HoldId: strings.ToUpper(uuid)})
			return err
		}, "INVALID_REQUEST", []string{"hold_id"}},
		{"malformed transaction_id", func(ctx context.Context) error {
			_, err := c.Reverse(ctx, &coalitionv1.ReverseRequest{IdempotencyKey: "k10", TransactionId: "42", Reason: "returned"})
			return err
		}, "INVALID_REQUEST", []string{"transaction_id"}},
		{"reverse without reason", func(ctx context.Context) error {
			_, err := c.Reverse(ctx, &coalitionv1.ReverseRequest{IdempotencyKey: "k11", TransactionId: uuid})
			return err
		}, "INVALID_REQUEST", []string{"reason"}},
		{"balance of a malformed member id", func(ctx context.Context) error {
			_, err := c.GetBalance(ctx, &coalitionv1.GetBalanceRequest{MemberId: "a b"})
			return err
		}, "INVALID_REQUEST", []string{"member_id"}},
		{"listing with bad member id and page size", func(ctx context.Context) error {
			_, err := c.ListTransactions(ctx, &coalitionv1.ListTransactionsRequest{MemberId: "", PageSize: -1})
			return err
		}, "INVALID_REQUEST", []string{"member_id", "page_size"}},
		{"page token that is not base64", func(ctx context.Context) error {
			_, err := c.ListTransactions(ctx, &coalitionv1.ListTransactionsRequest{MemberId: member, PageToken: "!!!"})
			return err
		}, "INVALID_PAGE_TOKEN", []string{"page_token"}},
		{"page token without a position", func(ctx context.Context) error {
			_, err := c.ListTransactions(ctx, &coalitionv1.ListTransactionsRequest{MemberId: member, PageToken: pageToken("garbage")})
			return err
		}, "INVALID_PAGE_TOKEN", []string{"page_token"}},
		{"page token with an id that is not a uuid", func(ctx context.Context) error {
			_, err := c.ListTransactions(ctx, &coalitionv1.ListTransactionsRequest{MemberId: member,
				PageToken: pageToken("2025-01-02T03:04:05Z|" + strings.Repeat("z", 36))})
			return err
		}, "INVALID_PAGE_TOKEN", []string{"page_token"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := wantStatus(t, tt.call(testContext(t)), codes.InvalidArgument, tt.wantReason)
			if got := badRequestFields(st); !slices.Equal(got, tt.wantFields) {
				t.Errorf("BadRequest fields = %q, want %q", got, tt.wantFields)
			}
		})
	}
	for _, table := range []string{"transactions", "idempotency_keys", "members", "holds"} {
		if n := queryInt(t, env.DatabaseURL, "SELECT count(*) FROM "+table); n != 0 {
			t.Errorf("%d rows in %s after invalid requests, want 0", n, table)
		}
	}
	env.Verify(t)
}

func TestHoldsOverGRPC(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := testContext(t)
	const member = "member-holds"
	award(t, env.AcmeAir, "award-1", member, 1000)

	auth, err := env.BeanCoffee.AuthorizeRedemption(ctx, &coalitionv1.AuthorizeRedemptionRequest{IdempotencyKey: "auth-1", MemberId: member, Points: 300})
	if err != nil {
		t.Fatalf("AuthorizeRedemption: %v", err)
	}
	hold := auth.GetHold()
	if got := hold.GetExpiresAt().AsTime().Sub(auth.GetTransaction().GetCreatedAt().AsTime()); got != 15*time.Minute {
		t.Errorf("hold expires %s after its authorization, want the default 15m", got)
	}
	wantBalance := &coalitionv1.Balance{MemberId: member, Posted: 1000, Held: 300, Available: 700}
	if !proto.Equal(auth.GetBalance(), wantBalance) || hold.GetStatus() != coalitionv1.HoldStatus_HOLD_STATUS_OPEN {
		t.Errorf("authorize: balance %v hold %v, want %v and an open hold", auth.GetBalance(), hold, wantBalance)
	}

	_, err = env.CityFuel.CaptureRedemption(ctx, &coalitionv1.CaptureRedemptionRequest{IdempotencyKey: "steal-1", HoldId: hold.GetId(), Points: 100})
	wantStatus(t, err, codes.NotFound, "HOLD_NOT_FOUND")
	_, err = env.CityFuel.VoidRedemption(ctx, &coalitionv1.VoidRedemptionRequest{IdempotencyKey: "steal-2", HoldId: hold.GetId()})
	wantStatus(t, err, codes.NotFound, "HOLD_NOT_FOUND")

	capture, err := env.BeanCoffee.CaptureRedemption(ctx, &coalitionv1.CaptureRedemptionRequest{IdempotencyKey: "capture-1", HoldId: hold.GetId(), Points: 120})
	if err != nil {
		t.Fatalf("CaptureRedemption: %v", err)
	}
	wantBalance = &coalitionv1.Balance{MemberId: member, Posted: 880, Held: 0, Available: 880}
	if !proto.Equal(capture.GetBalance(), wantBalance) {
		t.Errorf("capture: balance %v, want %v", capture.GetBalance(), wantBalance)
	}
	if h := capture.GetHold(); h.GetStatus() != coalitionv1.HoldStatus_HOLD_STATUS_CAPTURED || h.GetCapturedPoints() != 120 {
		t.Errorf("captured hold = %v, want CAPTURED with 120 points", h)
	}
	wantAvailable(t, env.BeanCoffee, member, 880)

	auth2, err := env.BeanCoffee.AuthorizeRedemption(ctx, &coalitionv1.AuthorizeRedemptionRequest{IdempotencyKey: "auth-2", MemberId: member, Points: 200,
		HoldTtl: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatalf("AuthorizeRedemption: %v", err)
	}
	if got := auth2.GetHold().GetExpiresAt().AsTime().Sub(auth2.GetTransaction().GetCreatedAt().AsTime()); got != time.Hour {
		t.Errorf("hold expires %s after its authorization, want the requested 1h", got)
	}
	wantAvailable(t, env.BeanCoffee, member, 680)
	void, err := env.BeanCoffee.VoidRedemption(ctx, &coalitionv1.VoidRedemptionRequest{IdempotencyKey: "void-2", HoldId: auth2.GetHold().GetId()})
	if err != nil {
		t.Fatalf("VoidRedemption: %v", err)
	}
	if void.GetHold().GetStatus() != coalitionv1.HoldStatus_HOLD_STATUS_VOIDED || void.GetBalance().GetAvailable() != 880 {
		t.Errorf("void: hold %v balance %v, want VOIDED and 880 available", void.GetHold(), void.GetBalance())
	}
	_, err = env.BeanCoffee.CaptureRedemption(ctx, &coalitionv1.CaptureRedemptionRequest{IdempotencyKey: "capture-2", HoldId: auth2.GetHold().GetId()})
	wantStatus(t, err, codes.FailedPrecondition, "HOLD_NOT_OPEN")
	_, err = env.BeanCoffee.CaptureRedemption(ctx, &coalitionv1.CaptureRedemptionRequest{IdempotencyKey: "capture-3", HoldId: hold.GetId()})
	wantStatus(t, err, codes.FailedPrecondition, "HOLD_NOT_OPEN")

	auth3, err := env.BeanCoffee.AuthorizeRedemption(ctx, &coalitionv1.AuthorizeRedemptionRequest{IdempotencyKey: "auth-3", MemberId: member, Points: 50})
	if err != nil {
		t.Fatalf("AuthorizeRedemption: %v", err)
	}
	_, err = env.BeanCoffee.CaptureRedemption(ctx, &coalitionv1.CaptureRedemptionRequest{IdempotencyKey: "capture-4", HoldId: auth3.GetHold().GetId(), Points: 51})
	wantStatus(t, err, codes.FailedPrecondition, "CAPTURE_EXCEEDS_HOLD")
	wantAvailable(t, env.BeanCoffee, member, 830)
	env.Verify(t)
}

func TestListTransactionsShowsOnlyTheCallersOwn(t *testing.T) {
	t.Parallel()
	env := gatewaytest.Start(t)
	ctx := testContext(t)
	const member = "member-list"
	var acmeIDs []string // newest first
	for _, key := range []string{"a1", "a2", "a3", "a4", "a5"} {
		acmeIDs = slices.Insert(acmeIDs, 0, award(t, env.AcmeAir, key, member, 10).GetTransaction().GetId())
	}
	award(t, env.BeanCoffee, "b1", member, 7)
	if _, err := env.BeanCoffee.Redeem(ctx, &coalitionv1.RedeemRequest{IdempotencyKey: "b2", MemberId: member, Points: 5}); err != nil {
		t.Fatalf("Redeem: %v", err)
	}

	var got []string
	var pageSizes []int
	token := ""
	for page := 0; page < 10; page++ {
		resp, err := env.AcmeAir.ListTransactions(ctx, &coalitionv1.ListTransactionsRequest{MemberId: member, PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatalf("ListTransactions page %d: %v", page, err)
		}
		for _, tx := range resp.GetTransactions() {
			if tx.GetPartnerId() != gatewaytest.AcmeAir || tx.GetMemberId() != member {
				t.Errorf("acme-air listed %v", tx)
			}
			got = append(got, tx.GetId())
		}
		pageSizes = append(pageSizes, len(resp.GetTransactions()))
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	if !slices.Equal(got, acmeIDs) {
		t.Errorf("acme-air listed %q, want its own awards newest first %q", got, acmeIDs)
	}
	if want := []int{2, 2, 1}; !slices.Equal(pageSizes, want) {
		t.Errorf("page sizes = %v, want %v", pageSizes, want)
	}

	all, err := env.AcmeAir.ListTransactions(ctx, &coalitionv1.ListTransactionsRequest{MemberId: member})
	if err != nil || len(all.GetTransactions()) != 5 || all.GetNextPageToken() != "" {
		t.Errorf("default page: %d transactions, token %q, err %v; want 5, no token", len(all.GetTransactions()), all.GetNextPageToken(), err)
	}
	bean, err := env.BeanCoffee.ListTransactions(ctx, &coalitionv1.ListTransactionsRequest{MemberId: member})
	if err != nil {
		t.Fatalf("ListTransactions: %v", err)
	}
	var kinds []coalitionv1.TransactionKind
	for _, tx := range bean.GetTransactions() {
		kinds = append(kinds, tx.GetKind())
	}
	wantKinds := []coalitionv1.TransactionKind{coalitionv1.TransactionKind_TRANSACTION_KIND_REDEEM, coalitionv1.TransactionKind_TRANSACTION_KIND_AWARD}
	if !slices.Equal(kinds, wantKinds) {
		t.Errorf("bean-coffee listed kinds %v, want %v", kinds, wantKinds)
	}
	none, err := env.CityFuel.ListTransactions(ctx, &coalitionv1.ListTransactionsRequest{MemberId: member})
	if err != nil || len(none.GetTransactions()) != 0 || none.GetNextPageToken() != "" {
		t.Errorf("city-fuel listed %v (err %v), want nothing", none.GetTransactions(), err)
	}
}
