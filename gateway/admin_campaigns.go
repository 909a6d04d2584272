package gateway

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// CampaignRegistry is what AdminService needs from the books for co-branded campaigns.
type CampaignRegistry interface {
	CreateCampaign(ctx context.Context, c settlement.Campaign, now time.Time) (settlement.Campaign, error)
	GetCampaign(ctx context.Context, id string) (settlement.Campaign, error)
	ListCampaigns(ctx context.Context) ([]settlement.Campaign, error)
	SetCampaignStatus(ctx context.Context, id string, status settlement.CampaignStatus) (settlement.Campaign, error)
}

var campaignStatusToProto = map[settlement.CampaignStatus]coalitionv1.CampaignStatus{
	settlement.CampaignActive: coalitionv1.CampaignStatus_CAMPAIGN_STATUS_ACTIVE,
	settlement.CampaignPaused: coalitionv1.CampaignStatus_CAMPAIGN_STATUS_PAUSED,
	settlement.CampaignEnded:  coalitionv1.CampaignStatus_CAMPAIGN_STATUS_ENDED,
}

// CreateCampaign starts a campaign.
func (s *adminService) CreateCampaign(ctx context.Context, req *coalitionv1.CreateCampaignRequest) (*coalitionv1.CreateCampaignResponse, error) {
	c, err := campaignFromProto(req.GetCampaign())
	if err != nil {
		return nil, err
	}
	if err := settlement.ValidateCampaign(c); err != nil {
		return nil, err
	}
	stored, err := s.registry.CreateCampaign(ctx, c, s.now())
	if err != nil {
		return nil, err
	}
	return &coalitionv1.CreateCampaignResponse{Campaign: campaignToProto(stored)}, nil
}

// GetCampaign reads a campaign.
func (s *adminService) GetCampaign(ctx context.Context, req *coalitionv1.GetCampaignRequest) (*coalitionv1.GetCampaignResponse, error) {
	if err := settlement.ValidateCampaignID(req.GetId()); err != nil {
		return nil, err
	}
	c, err := s.registry.GetCampaign(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &coalitionv1.GetCampaignResponse{Campaign: campaignToProto(c)}, nil
}

// ListCampaigns lists campaigns.
func (s *adminService) ListCampaigns(ctx context.Context, _ *coalitionv1.ListCampaignsRequest) (*coalitionv1.ListCampaignsResponse, error) {
	cs, err := s.registry.ListCampaigns(ctx)
	if err != nil {
		return nil, err
	}
	resp := &coalitionv1.ListCampaignsResponse{}
	for _, c := range cs {
		resp.Campaigns = append(resp.Campaigns, campaignToProto(c))
	}
	return resp, nil
}

// SetCampaignStatus pauses, resumes or ends a campaign.
func (s *adminService) SetCampaignStatus(ctx context.Context, req *coalitionv1.SetCampaignStatusRequest) (*coalitionv1.SetCampaignStatusResponse, error) {
	var status settlement.CampaignStatus
	for st, p := range campaignStatusToProto {
		if p == req.GetStatus() {
			status = st
		}
	}
	if status == "" {
		return nil, &settlement.ValidationError{Violations: []settlement.FieldViolation{{Field: "status", Description: "must be ACTIVE, PAUSED or ENDED"}}}
	}
	if err := settlement.ValidateCampaignID(req.GetId()); err != nil {
		return nil, err
	}
	c, err := s.registry.SetCampaignStatus(ctx, req.GetId(), status)
	if err != nil {
		return nil, err
	}
	return &coalitionv1.SetCampaignStatusResponse{Campaign: campaignToProto(c)}, nil
}

func campaignFromProto(p *coalitionv1.Campaign) (settlement.Campaign, error) {
	c := settlement.Campaign{ID: p.GetId(), Name: p.GetName(), StartsAt: timeOrZero(p.GetStartsAt()), EndsAt: timeOrZero(p.GetEndsAt()),
		FixedBonusPoints: p.GetFixedBonusPoints(), MinBasePoints: p.GetMinBasePoints(), MemberCapPoints: p.GetMemberCapPoints(),
		BudgetPoints: p.GetBudgetPoints(), LotLifetime: time.Duration(p.GetLotLifetimeSeconds()) * time.Second, Partners: p.GetPartnerIds()}
	if m := p.GetMultiplier(); m != "" {
		d, err := settlement.ParseDecimal("campaign.multiplier", m)
		if err != nil {
			return c, err
		}
		c.Multiplier = d
	}
	for _, sp := range p.GetSponsors() {
		c.Sponsors = append(c.Sponsors, settlement.Sponsor{PartnerID: sp.GetPartnerId(), ShareBps: sp.GetShareBps()})
	}
	return c, nil
}

func campaignToProto(c settlement.Campaign) *coalitionv1.Campaign {
	out := &coalitionv1.Campaign{Id: c.ID, Name: c.Name, Status: campaignStatusToProto[c.Status],
		StartsAt: timestamppb.New(c.StartsAt), EndsAt: timestamppb.New(c.EndsAt), FixedBonusPoints: c.FixedBonusPoints,
		MinBasePoints: c.MinBasePoints, MemberCapPoints: c.MemberCapPoints, BudgetPoints: c.BudgetPoints,
		BudgetRemainingPoints: c.BudgetRemainingPoints, LotLifetimeSeconds: int64(c.LotLifetime / time.Second), PartnerIds: c.Partners}
	if !c.Multiplier.IsZero() {
		out.Multiplier = c.Multiplier.Text('f')
	}
	for _, sp := range c.Sponsors {
		out.Sponsors = append(out.Sponsors, &coalitionv1.CampaignSponsor{PartnerId: sp.PartnerID, ShareBps: sp.ShareBps})
	}
	return out
}

func bonusesToProto(bs []settlement.Bonus) []*coalitionv1.Bonus {
	var out []*coalitionv1.Bonus
	for _, b := range bs {
		out = append(out, &coalitionv1.Bonus{CampaignId: b.CampaignID, Points: b.Points, TransactionId: b.TransactionID})
	}
	return out
}
