package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

type tourConfig struct {
	addr     string
	certsDir string
	// credited, when set (coalition dev --partner-sims), reads the units a partner's simulated
	// program credited to a member; the tour then exchanges points out to acme-air.
	credited func(partner, member string) int64
}

func newTourCmd(e *env) *cobra.Command {
	var c tourConfig
	cmd := &cobra.Command{
		Use:   "tour",
		Short: "Walk through the Points API against a running gateway and check every answer",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return runTour(cmd.Context(), e.stdout, c) },
	}
	cmd.Flags().StringVar(&c.addr, "addr", "127.0.0.1:7443", "gateway gRPC address")
	cmd.Flags().StringVar(&c.certsDir, "certs-dir", "", "directory with ca.crt and partner-<id>.crt/.key (coalition dev's DIR/certs)")
	return cmd
}

// dialPartner opens an mTLS connection as partner id with the certificates in certsDir.
func dialPartner(addr, certsDir, id string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cfg, err := tlsconfig.LoadClient(certsDir, "partner-"+id, host)
	if err != nil {
		return nil, err
	}
	return grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(cfg))}, opts...)...)
}

// tourStep prints what it does and checks the answer.
type tourStep struct {
	w    io.Writer
	step int
}

func (t *tourStep) ok(format string, args ...any) {
	t.step++
	fmt.Fprintf(t.w, "  %d. ok  %s\n", t.step, fmt.Sprintf(format, args...))
}

func wantReason(err error, code codes.Code, reason string) error {
	if status.Code(err) != code || gateway.ReasonOf(err) != reason {
		return fmt.Errorf("got %v, want %s %s", err, code, reason)
	}
	return nil
}

// runTour awards at one partner, redeems at another, replays, and shows the refusals.
func runTour(ctx context.Context, w io.Writer, c tourConfig) error {
	if c.certsDir == "" {
		return errors.New("--certs-dir is required")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	clients := map[string]coalitionv1.PointsServiceClient{}
	var exchange coalitionv1.ExchangeServiceClient
	for _, id := range []string{"acme-air", "bean-coffee", "city-fuel"} {
		conn, err := dialPartner(c.addr, c.certsDir, id)
		if err != nil {
			return err
		}
		defer conn.Close()
		clients[id] = coalitionv1.NewPointsServiceClient(conn)
		if id == "acme-air" {
			exchange = coalitionv1.NewExchangeServiceClient(conn)
		}
	}
	member := fmt.Sprintf("TOUR-%d", time.Now().UnixNano())
	run := fmt.Sprint(time.Now().UnixNano())
	fmt.Fprintf(w, "\nTour of the Points API (member %s)\n", member)
	t := &tourStep{w: w}
	if err := tourSteps(ctx, t, clients, member, run); err != nil {
		return err
	}
	if c.credited != nil {
		if err := tourExchange(ctx, t, exchange, clients["acme-air"], c.credited, member, run); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "Tour passed.")
	return nil
}

// tourExchange converts coalition points into acme-air's own (simulated) program.
func tourExchange(ctx context.Context, t *tourStep, ex coalitionv1.ExchangeServiceClient, air coalitionv1.PointsServiceClient,
	credited func(partner, member string) int64, member, run string) error {
	resp, err := ex.ExchangeOut(ctx, &coalitionv1.ExchangeOutRequest{IdempotencyKey: "tour-exchange-" + run, MemberId: member, ToPartner: "acme-air", Points: 40})
	if err != nil || resp.GetExchange().GetState() != coalitionv1.ExchangeState_EXCHANGE_STATE_COMPLETED {
		return fmt.Errorf("exchange out: got %v %v, want COMPLETED", resp.GetExchange(), err)
	}
	bal, err := air.GetBalance(ctx, &coalitionv1.GetBalanceRequest{MemberId: member})
	if err != nil || bal.GetBalance().GetAvailable() != 200 || credited("acme-air", member) != resp.GetExchange().GetUnits() {
		return fmt.Errorf("after the exchange: balance %v (%v), acme-air credited %d units, want available 200 and %d units",
			bal.GetBalance(), err, credited("acme-air", member), resp.GetExchange().GetUnits())
	}
	t.ok("acme-air exchanges 40 coalition points into its own program -> %s, %d units credited there, available %d",
		resp.GetExchange().GetState(), credited("acme-air", member), bal.GetBalance().GetAvailable())
	return nil
}

func tourSteps(ctx context.Context, t *tourStep, cl map[string]coalitionv1.PointsServiceClient, member, run string) error {
	air, bean, fuel := cl["acme-air"], cl["bean-coffee"], cl["city-fuel"]
	award, err := air.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: "tour-award-" + run, MemberId: member, Points: 500, Reference: "flight-LHR-JFK"})
	if err != nil || award.GetBalance().GetAvailable() != 500 {
		return fmt.Errorf("award: got %v %v, want available 500", award.GetBalance(), err)
	}
	t.ok("acme-air awards 500 points to a new member -> available %d", award.GetBalance().GetAvailable())
	redeem := &coalitionv1.RedeemRequest{IdempotencyKey: "tour-redeem-" + run, MemberId: member, Points: 200, Reference: "latte"}
	first, err := bean.Redeem(ctx, redeem)
	if err != nil || first.GetBalance().GetAvailable() != 300 {
		return fmt.Errorf("redeem: got %v %v, want available 300", first.GetBalance(), err)
	}
	t.ok("bean-coffee redeems 200 -> available %d (transaction %s)", first.GetBalance().GetAvailable(), first.GetTransaction().GetId())
	again, err := bean.Redeem(ctx, redeem)
	if err != nil || !again.GetReplayed() || again.GetTransaction().GetId() != first.GetTransaction().GetId() || again.GetBalance().GetAvailable() != 300 {
		return fmt.Errorf("replay: got %v %v, want the same transaction replayed", again, err)
	}
	t.ok("the same redeem again -> same transaction, replayed=%v, available %d", again.GetReplayed(), again.GetBalance().GetAvailable())
	_, err = bean.Redeem(ctx, &coalitionv1.RedeemRequest{IdempotencyKey: redeem.IdempotencyKey, MemberId: member, Points: 201, Reference: "latte"})
	if err := wantReason(err, codes.FailedPrecondition, "IDEMPOTENCY_KEY_REUSED"); err != nil {
		return fmt.Errorf("key reuse: %w", err)
	}
	t.ok("the same key with 201 points -> FAILED_PRECONDITION IDEMPOTENCY_KEY_REUSED")
	_, err = bean.Redeem(ctx, &coalitionv1.RedeemRequest{IdempotencyKey: "tour-over-" + run, MemberId: member, Points: 301})
	if err := wantReason(err, codes.FailedPrecondition, "INSUFFICIENT_POINTS"); err != nil {
		return fmt.Errorf("over-redemption: %w", err)
	}
	bal, err := bean.GetBalance(ctx, &coalitionv1.GetBalanceRequest{MemberId: member})
	if err != nil || bal.GetBalance().GetAvailable() != 300 {
		return fmt.Errorf("balance after refusal: got %v %v, want 300", bal.GetBalance(), err)
	}
	t.ok("redeem 301 -> FAILED_PRECONDITION INSUFFICIENT_POINTS, balance still %d", bal.GetBalance().GetAvailable())
	_, err = bean.Reverse(ctx, &coalitionv1.ReverseRequest{IdempotencyKey: "tour-steal-" + run, TransactionId: award.GetTransaction().GetId(), Reason: "not mine"})
	if status.Code(err) != codes.NotFound {
		return fmt.Errorf("foreign reversal: got %v, want NOT_FOUND", err)
	}
	t.ok("bean-coffee tries to reverse acme-air's award -> NOT_FOUND")
	return tourHolds(ctx, t, fuel, member, run)
}

func tourHolds(ctx context.Context, t *tourStep, fuel coalitionv1.PointsServiceClient, member, run string) error {
	auth, err := fuel.AuthorizeRedemption(ctx, &coalitionv1.AuthorizeRedemptionRequest{IdempotencyKey: "tour-auth-" + run, MemberId: member, Points: 100, Reference: "pump-4"})
	if err != nil || auth.GetBalance().GetAvailable() != 200 || auth.GetBalance().GetHeld() != 100 {
		return fmt.Errorf("authorize: got %v %v, want available 200 held 100", auth.GetBalance(), err)
	}
	t.ok("city-fuel authorizes 100 -> held %d, available %d", auth.GetBalance().GetHeld(), auth.GetBalance().GetAvailable())
	capt, err := fuel.CaptureRedemption(ctx, &coalitionv1.CaptureRedemptionRequest{IdempotencyKey: "tour-capture-" + run, HoldId: auth.GetHold().GetId(), Points: 60})
	if err != nil || capt.GetBalance().GetAvailable() != 240 || capt.GetBalance().GetHeld() != 0 {
		return fmt.Errorf("capture: got %v %v, want available 240 held 0", capt.GetBalance(), err)
	}
	t.ok("city-fuel captures 60 of it, the other 40 are released -> available %d", capt.GetBalance().GetAvailable())
	_, err = fuel.VoidRedemption(ctx, &coalitionv1.VoidRedemptionRequest{IdempotencyKey: "tour-void-" + run, HoldId: auth.GetHold().GetId()})
	if err := wantReason(err, codes.FailedPrecondition, "HOLD_NOT_OPEN"); err != nil {
		return fmt.Errorf("void after capture: %w", err)
	}
	t.ok("voiding the captured hold -> FAILED_PRECONDITION HOLD_NOT_OPEN")
	return nil
}
