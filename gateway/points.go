package gateway

import (
	"context"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// Ledger is what the Points API needs from the books.
type Ledger interface {
	Apply(ctx context.Context, cmd settlement.Command) (settlement.Outcome, error)
	Balance(ctx context.Context, memberID string) (settlement.Balance, error)
	ListTransactions(ctx context.Context, partnerID, memberID string, pageSize int, after *settlement.Page) ([]settlement.Transaction, *settlement.Page, error)
}

// pointsService implements coalitionv1.PointsServiceServer. The interceptors have already
// authenticated the caller as an active partner; handlers read it with partnerFrom.
type pointsService struct {
	coalitionv1.UnimplementedPointsServiceServer
	ledger Ledger
}

func (s *pointsService) apply(ctx context.Context, cmd settlement.Command) (settlement.Outcome, error) {
	cmd.PartnerID = partnerFrom(ctx)
	return s.ledger.Apply(ctx, cmd)
}

// Award credits points to a member as a new lot issued by the caller.
func (s *pointsService) Award(ctx context.Context, req *coalitionv1.AwardRequest) (*coalitionv1.AwardResponse, error) {
	out, err := s.apply(ctx, settlement.Command{
		Op: settlement.OpAward, IdempotencyKey: req.GetIdempotencyKey(), MemberID: req.GetMemberId(),
		Points: req.GetPoints(), Reference: req.GetReference(), OccurredAt: timeOrZero(req.GetOccurredAt()),
		Metadata: req.GetMetadata(),
	})
	if err != nil {
		return nil, err
	}
	return &coalitionv1.AwardResponse{Transaction: transactionToProto(out.Transaction), Balance: balanceToProto(out.Balance), Replayed: out.Replayed,
		Bonuses: bonusesToProto(out.Bonuses)}, nil
}

// Redeem spends points at the caller in one step.
func (s *pointsService) Redeem(ctx context.Context, req *coalitionv1.RedeemRequest) (*coalitionv1.RedeemResponse, error) {
	out, err := s.apply(ctx, settlement.Command{
		Op: settlement.OpRedeem, IdempotencyKey: req.GetIdempotencyKey(), MemberID: req.GetMemberId(),
		Points: req.GetPoints(), Reference: req.GetReference(),
	})
	if err != nil {
		return nil, err
	}
	return &coalitionv1.RedeemResponse{Transaction: transactionToProto(out.Transaction), Balance: balanceToProto(out.Balance), Replayed: out.Replayed}, nil
}

// AuthorizeRedemption places a hold.
func (s *pointsService) AuthorizeRedemption(ctx context.Context, req *coalitionv1.AuthorizeRedemptionRequest) (*coalitionv1.AuthorizeRedemptionResponse, error) {
	cmd := settlement.Command{
		Op: settlement.OpAuthorize, IdempotencyKey: req.GetIdempotencyKey(), MemberID: req.GetMemberId(),
		Points: req.GetPoints(), Reference: req.GetReference(),
	}
	if ttl := req.GetHoldTtl(); ttl != nil {
		cmd.HoldTTL = ttl.AsDuration()
		if cmd.HoldTTL == 0 || ttl.CheckValid() != nil {
			cmd.HoldTTL = -1 // present but zero or malformed: validation names the field
		}
	}
	out, err := s.apply(ctx, cmd)
	if err != nil {
		return nil, err
	}
	return &coalitionv1.AuthorizeRedemptionResponse{Transaction: transactionToProto(out.Transaction),
		Balance: balanceToProto(out.Balance), Replayed: out.Replayed, Hold: holdToProto(out.Hold)}, nil
}

// CaptureRedemption captures all or part of a hold.
func (s *pointsService) CaptureRedemption(ctx context.Context, req *coalitionv1.CaptureRedemptionRequest) (*coalitionv1.CaptureRedemptionResponse, error) {
	out, err := s.apply(ctx, settlement.Command{
		Op: settlement.OpCapture, IdempotencyKey: req.GetIdempotencyKey(), HoldID: req.GetHoldId(), Points: req.GetPoints(),
	})
	if err != nil {
		return nil, err
	}
	return &coalitionv1.CaptureRedemptionResponse{Transaction: transactionToProto(out.Transaction),
		Balance: balanceToProto(out.Balance), Replayed: out.Replayed, Hold: holdToProto(out.Hold)}, nil
}

// VoidRedemption releases a hold.
func (s *pointsService) VoidRedemption(ctx context.Context, req *coalitionv1.VoidRedemptionRequest) (*coalitionv1.VoidRedemptionResponse, error) {
	out, err := s.apply(ctx, settlement.Command{
		Op: settlement.OpVoid, IdempotencyKey: req.GetIdempotencyKey(), HoldID: req.GetHoldId(),
	})
	if err != nil {
		return nil, err
	}
	return &coalitionv1.VoidRedemptionResponse{Transaction: transactionToProto(out.Transaction),
		Balance: balanceToProto(out.Balance), Replayed: out.Replayed, Hold: holdToProto(out.Hold)}, nil
}

// Reverse undoes all or part of one of the caller's transactions.
func (s *pointsService) Reverse(ctx context.Context, req *coalitionv1.ReverseRequest) (*coalitionv1.ReverseResponse, error) {
	out, err := s.apply(ctx, settlement.Command{
		Op: settlement.OpReverse, IdempotencyKey: req.GetIdempotencyKey(), TransactionID: req.GetTransactionId(),
		Points: req.GetPoints(), Reason: req.GetReason(),
	})
	if err != nil {
		return nil, err
	}
	return &coalitionv1.ReverseResponse{Transaction: transactionToProto(out.Transaction), Balance: balanceToProto(out.Balance), Replayed: out.Replayed,
		Bonuses: bonusesToProto(out.Bonuses)}, nil
}

// GetBalance reads a member's balance.
func (s *pointsService) GetBalance(ctx context.Context, req *coalitionv1.GetBalanceRequest) (*coalitionv1.GetBalanceResponse, error) {
	b, err := s.ledger.Balance(ctx, req.GetMemberId())
	if err != nil {
		return nil, err
	}
	return &coalitionv1.GetBalanceResponse{Balance: balanceToProto(b)}, nil
}

// ListTransactions lists the caller's own transactions with a member, newest first.
func (s *pointsService) ListTransactions(ctx context.Context, req *coalitionv1.ListTransactionsRequest) (*coalitionv1.ListTransactionsResponse, error) {
	after, err := decodePageToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	txns, next, err := s.ledger.ListTransactions(ctx, partnerFrom(ctx), req.GetMemberId(), int(req.GetPageSize()), after)
	if err != nil {
		return nil, err
	}
	resp := &coalitionv1.ListTransactionsResponse{NextPageToken: encodePageToken(next)}
	for _, t := range txns {
		resp.Transactions = append(resp.Transactions, transactionToProto(t))
	}
	return resp, nil
}
