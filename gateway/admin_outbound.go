package gateway

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// Outbound is what AdminService's partner-call RPCs need from the books.
type Outbound interface {
	SetPartnerEndpoint(ctx context.Context, e settlement.PartnerEndpoint, now time.Time) (settlement.PartnerEndpoint, error)
	ListPartnerEndpoints(ctx context.Context) ([]settlement.PartnerEndpoint, error)
	ListOutbox(ctx context.Context, partnerID string, state settlement.OutboxState, limit int) ([]settlement.OutboxEvent, error)
	ReplayOutbox(ctx context.Context, partnerID string, ids []string, now time.Time) (int64, error)
}

// PartnerBreaker is one circuit breaker of this replica, as ListPartnerBreakers shows it.
type PartnerBreaker struct {
	PartnerID, Operation, State string
	ConsecutiveFailures         uint32
	InFlight                    int
}

// outboundAdmin holds what the partner-call RPCs of AdminService use; nil fields leave them
// UNIMPLEMENTED.
type outboundAdmin struct {
	store    Outbound
	breakers func() []PartnerBreaker
}

var errNoOutbound = status.Error(codes.Unimplemented, "partner calls are not configured on this gateway")

// ConfigurePartnerEndpoint sets how the coalition calls a partner.
func (s *adminService) ConfigurePartnerEndpoint(ctx context.Context, req *coalitionv1.ConfigurePartnerEndpointRequest) (*coalitionv1.ConfigurePartnerEndpointResponse, error) {
	if s.outbound.store == nil {
		return nil, errNoOutbound
	}
	p := req.GetEndpoint()
	e := settlement.PartnerEndpoint{PartnerID: p.GetPartnerId(), Endpoint: p.GetEndpoint(), ServerName: p.GetServerName(),
		CallTimeout: time.Duration(p.GetCallTimeoutMs()) * time.Millisecond, ExchangeTimeout: time.Duration(p.GetExchangeTimeoutMs()) * time.Millisecond,
		MaxInFlight: int(p.GetMaxInFlight()), RatioUnits: p.GetRatioUnits(), RatioPoints: p.GetRatioPoints(), Events: p.GetEvents()}.WithDefaults()
	if err := settlement.ValidatePartnerEndpoint(e); err != nil {
		return nil, err
	}
	stored, err := s.outbound.store.SetPartnerEndpoint(ctx, e, s.now())
	if err != nil {
		return nil, err
	}
	return &coalitionv1.ConfigurePartnerEndpointResponse{Endpoint: endpointToProto(stored)}, nil
}

// ListPartnerEndpoints lists every partner's endpoint configuration.
func (s *adminService) ListPartnerEndpoints(ctx context.Context, _ *coalitionv1.ListPartnerEndpointsRequest) (*coalitionv1.ListPartnerEndpointsResponse, error) {
	if s.outbound.store == nil {
		return nil, errNoOutbound
	}
	es, err := s.outbound.store.ListPartnerEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	resp := &coalitionv1.ListPartnerEndpointsResponse{}
	for _, e := range es {
		resp.Endpoints = append(resp.Endpoints, endpointToProto(e))
	}
	return resp, nil
}

func endpointToProto(e settlement.PartnerEndpoint) *coalitionv1.PartnerEndpoint {
	return &coalitionv1.PartnerEndpoint{PartnerId: e.PartnerID, Endpoint: e.Endpoint, ServerName: e.ServerName,
		CallTimeoutMs: e.CallTimeout.Milliseconds(), ExchangeTimeoutMs: e.ExchangeTimeout.Milliseconds(),
		MaxInFlight: int64(e.MaxInFlight), RatioUnits: e.RatioUnits, RatioPoints: e.RatioPoints, Events: e.Events}
}

// ListPartnerBreakers reads this replica's breakers.
func (s *adminService) ListPartnerBreakers(context.Context, *coalitionv1.ListPartnerBreakersRequest) (*coalitionv1.ListPartnerBreakersResponse, error) {
	if s.outbound.breakers == nil {
		return nil, errNoOutbound
	}
	resp := &coalitionv1.ListPartnerBreakersResponse{}
	for _, b := range s.outbound.breakers() {
		resp.Breakers = append(resp.Breakers, &coalitionv1.PartnerBreaker{PartnerId: b.PartnerID, Operation: b.Operation,
			State: b.State, ConsecutiveFailures: int64(b.ConsecutiveFailures), InFlight: int64(b.InFlight)})
	}
	return resp, nil
}

// ListOutboxEvents lists outbox events (dead ones by default).
func (s *adminService) ListOutboxEvents(ctx context.Context, req *coalitionv1.ListOutboxEventsRequest) (*coalitionv1.ListOutboxEventsResponse, error) {
	if s.outbound.store == nil {
		return nil, errNoOutbound
	}
	state := settlement.OutboxState(req.GetState())
	switch state {
	case "":
		state = settlement.OutboxDead
	case settlement.OutboxPending, settlement.OutboxDelivered, settlement.OutboxDead:
	default:
		return nil, &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "state", Description: "must be pending, delivered or dead"}}}
	}
	limit := int(req.GetLimit())
	if limit <= 0 {
		limit = 100
	}
	events, err := s.outbound.store.ListOutbox(ctx, req.GetPartnerId(), state, limit)
	if err != nil {
		return nil, err
	}
	resp := &coalitionv1.ListOutboxEventsResponse{}
	for _, e := range events {
		resp.Events = append(resp.Events, &coalitionv1.OutboxEvent{Id: e.ID, PartnerId: e.PartnerID, Type: e.Type,
			MemberId: e.MemberID, Points: e.Points, TransactionId: e.TransactionID, State: string(e.State),
			Attempts: int64(e.Attempts), LastError: e.LastError, CreatedAt: optionalTime(e.CreatedAt)})
	}
	return resp, nil
}

// ReplayOutboxEvents puts a partner's dead events back in its queue.
func (s *adminService) ReplayOutboxEvents(ctx context.Context, req *coalitionv1.ReplayOutboxEventsRequest) (*coalitionv1.ReplayOutboxEventsResponse, error) {
	if s.outbound.store == nil {
		return nil, errNoOutbound
	}
	if req.GetPartnerId() == "" {
		return nil, &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "partner_id", Description: "is required"}}}
	}
	for _, id := range req.GetIds() {
		if !isUUID(id) {
			return nil, &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "ids", Description: "must be event ids (UUIDs)"}}}
		}
	}
	n, err := s.outbound.store.ReplayOutbox(ctx, req.GetPartnerId(), req.GetIds(), s.now())
	if err != nil {
		return nil, err
	}
	return &coalitionv1.ReplayOutboxEventsResponse{Replayed: n}, nil
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if r != '-' {
				return false
			}
		case (r < '0' || r > '9') && (r < 'a' || r > 'f'):
			return false
		}
	}
	return true
}
