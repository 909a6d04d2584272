package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// Registry is what AdminService needs from the books.
type Registry interface {
	EnsurePartner(ctx context.Context, p settlement.Partner) (bool, error)
	SetPartnerStatus(ctx context.Context, id string, status settlement.PartnerStatus) (settlement.Partner, error)
	ListPartners(ctx context.Context) ([]settlement.Partner, error)
	SetPriceTerms(ctx context.Context, t settlement.PriceTerms, now time.Time) (settlement.PriceTerms, error)
	ListPriceTerms(ctx context.Context, partnerID string) ([]settlement.PriceTerms, error)
	CampaignRegistry // admin_campaigns.go
}

// adminService implements coalitionv1.AdminServiceServer for operators.
type adminService struct {
	coalitionv1.UnimplementedAdminServiceServer
	registry Registry
	now      func() time.Time
	// changed is told about every partner whose registration or status changed.
	changed func(partnerID string)
	// outbound backs the partner endpoint, breaker and outbox RPCs (admin_outbound.go).
	outbound outboundAdmin
}

var partnerStatusToProto = map[settlement.PartnerStatus]coalitionv1.PartnerStatus{
	settlement.PartnerActive:    coalitionv1.PartnerStatus_PARTNER_STATUS_ACTIVE,
	settlement.PartnerSuspended: coalitionv1.PartnerStatus_PARTNER_STATUS_SUSPENDED,
}

func partnerToProto(p settlement.Partner) *coalitionv1.Partner {
	return &coalitionv1.Partner{Id: p.ID, Name: p.Name, Status: partnerStatusToProto[p.Status]}
}

// RegisterPartner adds a partner.
func (s *adminService) RegisterPartner(ctx context.Context, req *coalitionv1.RegisterPartnerRequest) (*coalitionv1.RegisterPartnerResponse, error) {
	p := settlement.Partner{ID: req.GetId(), Name: req.GetName(), Status: settlement.PartnerActive}
	if err := settlement.ValidatePartner(p); err != nil {
		return nil, err
	}
	created, err := s.registry.EnsurePartner(ctx, p)
	if err != nil {
		return nil, err
	}
	if !created {
		return nil, withInfo(codes.AlreadyExists, fmt.Sprintf("partner %s already exists", p.ID), "PARTNER_EXISTS", nil).Err()
	}
	s.changed(p.ID)
	return &coalitionv1.RegisterPartnerResponse{Partner: partnerToProto(p)}, nil
}

// SetPartnerStatus suspends or resumes a partner.
func (s *adminService) SetPartnerStatus(ctx context.Context, req *coalitionv1.SetPartnerStatusRequest) (*coalitionv1.SetPartnerStatusResponse, error) {
	var status settlement.PartnerStatus
	switch req.GetStatus() {
	case coalitionv1.PartnerStatus_PARTNER_STATUS_ACTIVE:
		status = settlement.PartnerActive
	case coalitionv1.PartnerStatus_PARTNER_STATUS_SUSPENDED:
		status = settlement.PartnerSuspended
	default:
		return nil, &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "status", Description: "must be ACTIVE or SUSPENDED"}}}
	}
	p, err := s.registry.SetPartnerStatus(ctx, req.GetId(), status)
	if err != nil {
		return nil, err
	}
	s.changed(p.ID)
	return &coalitionv1.SetPartnerStatusResponse{Partner: partnerToProto(p)}, nil
}

// ListPartners lists every partner.
func (s *adminService) ListPartners(ctx context.Context, _ *coalitionv1.ListPartnersRequest) (*coalitionv1.ListPartnersResponse, error) {
	ps, err := s.registry.ListPartners(ctx)
	if err != nil {
		return nil, err
	}
	resp := &coalitionv1.ListPartnersResponse{}
	for _, p := range ps {
		resp.Partners = append(resp.Partners, partnerToProto(p))
	}
	return resp, nil
}

// SetPriceTerms adds a version of a partner's price terms.
func (s *adminService) SetPriceTerms(ctx context.Context, req *coalitionv1.SetPriceTermsRequest) (*coalitionv1.SetPriceTermsResponse, error) {
	t, err := termsFromProto(req.GetTerms())
	if err != nil {
		return nil, err
	}
	now := s.now()
	if err := settlement.ValidateTerms(t, now); err != nil {
		return nil, err
	}
	stored, err := s.registry.SetPriceTerms(ctx, t, now)
	if err != nil {
		return nil, err
	}
	return &coalitionv1.SetPriceTermsResponse{Terms: termsToProto(stored)}, nil
}

// ListPriceTerms lists a partner's versions.
func (s *adminService) ListPriceTerms(ctx context.Context, req *coalitionv1.ListPriceTermsRequest) (*coalitionv1.ListPriceTermsResponse, error) {
	ts, err := s.registry.ListPriceTerms(ctx, req.GetPartnerId())
	if err != nil {
		return nil, err
	}
	resp := &coalitionv1.ListPriceTermsResponse{}
	for _, t := range ts {
		resp.Terms = append(resp.Terms, termsToProto(t))
	}
	return resp, nil
}

func termsFromProto(p *coalitionv1.PriceTerms) (settlement.PriceTerms, error) {
	t := settlement.PriceTerms{PartnerID: p.GetPartnerId(), FeeBps: p.GetFeeBps(), Currency: p.GetCurrency(),
		EffectiveAt: timeOrZero(p.GetEffectiveAt())}
	share := p.GetBreakageShare()
	if share == "" {
		share = "0"
	}
	var bad settlement.ValidationError
	parse := func(field, s string, into *apdDecimal) {
		d, err := settlement.ParseDecimal(field, s)
		var ve *settlement.ValidationError
		if errors.As(err, &ve) {
			bad.Violations = append(bad.Violations, ve.Violations...)
		}
		*into = d
	}
	parse("terms.issue_price", p.GetIssuePrice(), &t.IssuePrice)
	parse("terms.reimbursement_rate", p.GetReimbursementRate(), &t.ReimbursementRate)
	parse("terms.breakage_share", share, &t.BreakageShare)
	if v := p.GetMaxOutstandingValue(); v != "" {
		var limit apdDecimal
		parse("terms.max_outstanding_value", v, &limit)
		t.Limits.MaxOutstandingValue = &limit
	}
	t.Limits.MaxPointsPerTransaction = p.GetMaxPointsPerTransaction()
	t.Limits.MaxPointsPerMemberDay = p.GetMaxPointsPerMemberDay()
	if len(bad.Violations) > 0 {
		return t, &bad
	}
	return t, nil
}

func termsToProto(t settlement.PriceTerms) *coalitionv1.PriceTerms {
	out := &coalitionv1.PriceTerms{
		PartnerId: t.PartnerID, Version: t.Version, EffectiveAt: timestamppb.New(t.EffectiveAt),
		IssuePrice: decimalText(t.IssuePrice), ReimbursementRate: decimalText(t.ReimbursementRate), FeeBps: t.FeeBps,
		Currency: t.Currency, BreakageShare: decimalText(t.BreakageShare),
		MaxPointsPerTransaction: t.Limits.MaxPointsPerTransaction, MaxPointsPerMemberDay: t.Limits.MaxPointsPerMemberDay,
	}
	if m := t.Limits.MaxOutstandingValue; m != nil {
		out.MaxOutstandingValue = decimalText(*m)
	}
	return out
}
