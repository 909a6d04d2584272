package gateway

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// Exchanges is what ExchangeService needs (partners.Exchanger implements it).
type Exchanges interface {
	// ExchangeOut runs an exchange for caller (a SPIFFE id) and reports whether it was a replay.
	ExchangeOut(ctx context.Context, caller string, req settlement.Exchange) (settlement.Exchange, bool, error)
	// Get reads an exchange, or settlement.ErrExchangeNotFound.
	Get(ctx context.Context, id string) (settlement.Exchange, error)
}

// exchangeService implements coalitionv1.ExchangeServiceServer for operators and partners.
type exchangeService struct {
	coalitionv1.UnimplementedExchangeServiceServer
	exchanges Exchanges
}

// ExchangeOut converts a member's points into a partner's program.
func (s *exchangeService) ExchangeOut(ctx context.Context, req *coalitionv1.ExchangeOutRequest) (*coalitionv1.ExchangeOutResponse, error) {
	caller, _ := callerFrom(ctx)
	if caller.Role == tlsconfig.RolePartner && req.GetToPartner() != caller.Name {
		return nil, withInfo(codes.PermissionDenied, fmt.Sprintf("partner %s may exchange only into its own program", caller.Name),
			ReasonRoleNotAllowed, nil).Err()
	}
	x, replayed, err := s.exchanges.ExchangeOut(ctx, caller.URI, settlement.Exchange{IdempotencyKey: req.GetIdempotencyKey(),
		MemberID: req.GetMemberId(), ToPartner: req.GetToPartner(), Points: req.GetPoints()})
	if err != nil {
		return nil, err
	}
	return &coalitionv1.ExchangeOutResponse{Exchange: exchangeToProto(x), Replayed: replayed}, nil
}

// GetExchange reads an exchange; a partner sees only exchanges into its own program.
func (s *exchangeService) GetExchange(ctx context.Context, req *coalitionv1.GetExchangeRequest) (*coalitionv1.GetExchangeResponse, error) {
	x, err := s.exchanges.Get(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	if caller, _ := callerFrom(ctx); caller.Role == tlsconfig.RolePartner && x.ToPartner != caller.Name {
		return nil, fmt.Errorf("%w: %s", settlement.ErrExchangeNotFound, req.GetId())
	}
	return &coalitionv1.GetExchangeResponse{Exchange: exchangeToProto(x)}, nil
}

var exchangeStateToProto = map[settlement.ExchangeState]coalitionv1.ExchangeState{
	settlement.ExchangePending:   coalitionv1.ExchangeState_EXCHANGE_STATE_PENDING,
	settlement.ExchangeCompleted: coalitionv1.ExchangeState_EXCHANGE_STATE_COMPLETED,
	settlement.ExchangeRejected:  coalitionv1.ExchangeState_EXCHANGE_STATE_REJECTED,
	settlement.ExchangeFailed:    coalitionv1.ExchangeState_EXCHANGE_STATE_FAILED,
}

func exchangeToProto(x settlement.Exchange) *coalitionv1.Exchange {
	return &coalitionv1.Exchange{Id: x.ID, MemberId: x.MemberID, ToPartner: x.ToPartner, Points: x.Points, Units: x.Units,
		State: exchangeStateToProto[x.State], HoldId: x.HoldID, PartnerCreditId: x.PartnerCreditID, Detail: x.Detail,
		Attempts: int64(x.Attempts), CreatedAt: optionalTime(x.CreatedAt), UpdatedAt: optionalTime(x.UpdatedAt)}
}

func optionalTime(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
