package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// newCampaignCmd is `coalition campaign`: co-branded campaigns through AdminService (operator).
func newCampaignCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "campaign", Short: "Co-branded bonus campaigns: create, show, list, pause, resume, end (operator)"}
	cmd.AddCommand(newCampaignCreateCmd(e), newCampaignShowCmd(e), newCampaignListCmd(e),
		newCampaignStatusCmd(e, "pause", coalitionv1.CampaignStatus_CAMPAIGN_STATUS_PAUSED),
		newCampaignStatusCmd(e, "resume", coalitionv1.CampaignStatus_CAMPAIGN_STATUS_ACTIVE),
		newCampaignStatusCmd(e, "end", coalitionv1.CampaignStatus_CAMPAIGN_STATUS_ENDED))
	return cmd
}

// campaignFlags are the flags of `campaign create`.
type campaignFlags struct {
	c                  coalitionv1.Campaign
	startsAt, endsAt   string
	sponsors, partners []string
	lotLifetime        time.Duration
}

func newCampaignCreateCmd(e *env) *cobra.Command {
	var o clientOptions
	var f campaignFlags
	cmd := &cobra.Command{
		Use:   "create --id ID --name NAME --sponsor P=PCT... --partner P... --starts-at T --ends-at T (--multiplier M | --fixed-bonus N) --budget N",
		Short: "Start a co-branded campaign (operator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.campaign()
			if err != nil {
				return err
			}
			return o.with(func(conn *grpc.ClientConn) error {
				resp, err := coalitionv1.NewAdminServiceClient(conn).CreateCampaign(cmd.Context(), &coalitionv1.CreateCampaignRequest{Campaign: c})
				if err != nil {
					return err
				}
				return printCampaign(e.stdout, resp.GetCampaign())
			})
		},
	}
	o.register(cmd, "operator")
	fl := cmd.Flags()
	fl.StringVar(&f.c.Id, "id", "", "campaign id, lowercase (required)")
	fl.StringVar(&f.c.Name, "name", "", "display name (required)")
	fl.StringArrayVar(&f.sponsors, "sponsor", nil, "sponsor and its share in percent, e.g. acme-air=60 (repeat; shares sum to 100)")
	fl.StringArrayVar(&f.partners, "partner", nil, "partner where the campaign applies (repeat)")
	fl.StringVar(&f.startsAt, "starts-at", "", "window start, RFC 3339 (default now)")
	fl.StringVar(&f.endsAt, "ends-at", "", "window end (exclusive), RFC 3339 (required)")
	fl.StringVar(&f.c.Multiplier, "multiplier", "", "bonus rule: multiplier of the base award, e.g. 2 (bonus = floor(base x (m - 1)))")
	fl.Int64Var(&f.c.FixedBonusPoints, "fixed-bonus", 0, "bonus rule: fixed bonus points per qualifying award")
	fl.Int64Var(&f.c.MinBasePoints, "min-base", 0, "awards below this many points earn no bonus")
	fl.Int64Var(&f.c.MemberCapPoints, "member-cap", 0, "bonus points one member may earn in all (0: no cap)")
	fl.Int64Var(&f.c.BudgetPoints, "budget", 0, "total bonus points the campaign may give (required)")
	fl.DurationVar(&f.lotLifetime, "lot-lifetime", 0, "lifetime of bonus lots, e.g. 8760h (0: the coalition's policy)")
	for _, name := range []string{"id", "name", "ends-at", "budget"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

// campaign converts the flags into the request's campaign.
func (f *campaignFlags) campaign() (*coalitionv1.Campaign, error) {
	c := &f.c
	starts := time.Now().UTC()
	if f.startsAt != "" {
		t, err := time.Parse(time.RFC3339, f.startsAt)
		if err != nil {
			return nil, fmt.Errorf("--starts-at: %w", err)
		}
		starts = t
	}
	ends, err := time.Parse(time.RFC3339, f.endsAt)
	if err != nil {
		return nil, fmt.Errorf("--ends-at: %w", err)
	}
	c.StartsAt, c.EndsAt = timestamppb.New(starts), timestamppb.New(ends)
	c.LotLifetimeSeconds = int64(f.lotLifetime / time.Second)
	c.PartnerIds = f.partners
	for _, s := range f.sponsors {
		id, pct, ok := strings.Cut(s, "=")
		bps, err := percentToBps(pct)
		if !ok || err != nil {
			return nil, fmt.Errorf("--sponsor %q: want partner=percent, e.g. acme-air=60", s)
		}
		c.Sponsors = append(c.Sponsors, &coalitionv1.CampaignSponsor{PartnerId: id, ShareBps: bps})
	}
	return c, nil
}

// percentToBps converts a percentage with at most two decimals ("60", "33.33") to basis points.
func percentToBps(pct string) (int64, error) {
	whole, frac, _ := strings.Cut(strings.TrimSuffix(pct, "%"), ".")
	if len(frac) > 2 {
		return 0, fmt.Errorf("%q has more than two decimals", pct)
	}
	n, err := strconv.ParseInt(whole+(frac + "00")[:2], 10, 64)
	if err != nil {
		return 0, err
	}
	return n, nil
}

func newCampaignShowCmd(e *env) *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show a campaign with its budget left (operator)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.with(func(conn *grpc.ClientConn) error {
				resp, err := coalitionv1.NewAdminServiceClient(conn).GetCampaign(cmd.Context(), &coalitionv1.GetCampaignRequest{Id: args[0]})
				if err != nil {
					return err
				}
				return printCampaign(e.stdout, resp.GetCampaign())
			})
		},
	}
	o.register(cmd, "operator")
	return cmd
}

func newCampaignListCmd(e *env) *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List campaigns (operator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.with(func(conn *grpc.ClientConn) error {
				resp, err := coalitionv1.NewAdminServiceClient(conn).ListCampaigns(cmd.Context(), &coalitionv1.ListCampaignsRequest{})
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, "id,status,budget_points,budget_remaining_points,starts_at,ends_at")
				for _, c := range resp.GetCampaigns() {
					fmt.Fprintf(e.stdout, "%s,%s,%d,%d,%s,%s\n", c.GetId(), statusWord(c.GetStatus()), c.GetBudgetPoints(), c.GetBudgetRemainingPoints(),
						c.GetStartsAt().AsTime().Format(time.RFC3339), c.GetEndsAt().AsTime().Format(time.RFC3339))
				}
				return nil
			})
		},
	}
	o.register(cmd, "operator")
	return cmd
}

func newCampaignStatusCmd(e *env, verb string, status coalitionv1.CampaignStatus) *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   verb + " ID",
		Short: verb + " a campaign; applies to the next award (operator)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.with(func(conn *grpc.ClientConn) error {
				resp, err := coalitionv1.NewAdminServiceClient(conn).SetCampaignStatus(cmd.Context(), &coalitionv1.SetCampaignStatusRequest{Id: args[0], Status: status})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "campaign %s is %s\n", resp.GetCampaign().GetId(), statusWord(resp.GetCampaign().GetStatus()))
				return err
			})
		},
	}
	o.register(cmd, "operator")
	return cmd
}

func statusWord(s coalitionv1.CampaignStatus) string { return enumWord(s, "CAMPAIGN_STATUS_") }

// enumWord is a proto enum value as a CLI word: its name without prefix, lower case
// (RUN_STATUS_PUBLISHED → "published").
func enumWord(e fmt.Stringer, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(e.String(), prefix))
}

// printCampaign writes a campaign as "field: value" lines.
func printCampaign(w io.Writer, c *coalitionv1.Campaign) error {
	rule := "multiplier " + c.GetMultiplier()
	if c.GetMultiplier() == "" {
		rule = fmt.Sprintf("fixed bonus %d", c.GetFixedBonusPoints())
	}
	var sponsors []string
	for _, s := range c.GetSponsors() {
		sponsors = append(sponsors, fmt.Sprintf("%s %d.%02d%%", s.GetPartnerId(), s.GetShareBps()/100, s.GetShareBps()%100))
	}
	_, err := fmt.Fprintf(w, "id: %s\nname: %s\nstatus: %s\nwindow: %s - %s\nrule: %s, min base %d\nmember cap: %d\nbudget: %d (%d left)\nlot lifetime: %s\nsponsors: %s\npartners: %s\n",
		c.GetId(), c.GetName(), statusWord(c.GetStatus()), c.GetStartsAt().AsTime().Format(time.RFC3339), c.GetEndsAt().AsTime().Format(time.RFC3339),
		rule, c.GetMinBasePoints(), c.GetMemberCapPoints(), c.GetBudgetPoints(), c.GetBudgetRemainingPoints(),
		time.Duration(c.GetLotLifetimeSeconds())*time.Second, strings.Join(sponsors, ", "), strings.Join(c.GetPartnerIds(), ", "))
	return err
}
