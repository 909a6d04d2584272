package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// partnerAdminCommands are the `coalition partner` subcommands that go through AdminService
// (operator identity): add, list, suspend, resume, terms set|show.
func partnerAdminCommands(e *env) []*cobra.Command {
	return []*cobra.Command{newPartnerAddCmd(e), newPartnerListCmd(e),
		newPartnerStatusCmd(e, "suspend", coalitionv1.PartnerStatus_PARTNER_STATUS_SUSPENDED),
		newPartnerStatusCmd(e, "resume", coalitionv1.PartnerStatus_PARTNER_STATUS_ACTIVE),
		newTermsCmd(e)}
}

func newPartnerAddCmd(e *env) *cobra.Command {
	var o clientOptions
	var id, name, endpoint string
	cmd := &cobra.Command{
		Use:   "add --id ID --name NAME [--endpoint HOST:PORT]",
		Short: "Register a partner, and where we call it when --endpoint is given (operator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.with(func(conn *grpc.ClientConn) error {
				resp, err := coalitionv1.NewAdminServiceClient(conn).RegisterPartner(cmd.Context(), &coalitionv1.RegisterPartnerRequest{Id: id, Name: name})
				if err != nil {
					return err
				}
				if _, err = fmt.Fprintf(e.stdout, "registered %s (%s), %s\n", resp.GetPartner().GetId(), resp.GetPartner().GetName(), resp.GetPartner().GetStatus()); err != nil || endpoint == "" {
					return err
				}
				ep, err := coalitionv1.NewAdminServiceClient(conn).ConfigurePartnerEndpoint(cmd.Context(), &coalitionv1.ConfigurePartnerEndpointRequest{
					Endpoint: &coalitionv1.PartnerEndpoint{PartnerId: id, Endpoint: endpoint}})
				if err != nil {
					return fmt.Errorf("partner %s is registered, but its endpoint was not stored (retry with `coalition partner configure`): %w", id, err)
				}
				_, err = fmt.Fprintf(e.stdout, "endpoint %s (timeouts and subscriptions: `coalition partner configure`)\n", ep.GetEndpoint().GetEndpoint())
				return err
			})
		},
	}
	o.register(cmd, "operator")
	cmd.Flags().StringVar(&id, "id", "", "partner id, lowercase (required)")
	cmd.Flags().StringVar(&name, "name", "", "display name (required)")
	cmd.Flags().StringVar(&endpoint, "endpoint", "", "host:port of the partner's gRPC server we call (optional)")
	_ = cmd.MarkFlagRequired("id")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newPartnerListCmd(e *env) *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List partners (operator)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.with(func(conn *grpc.ClientConn) error {
				resp, err := coalitionv1.NewAdminServiceClient(conn).ListPartners(cmd.Context(), &coalitionv1.ListPartnersRequest{})
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, "id,name,status")
				for _, p := range resp.GetPartners() {
					fmt.Fprintf(e.stdout, "%s,%s,%s\n", p.GetId(), p.GetName(), p.GetStatus())
				}
				return nil
			})
		},
	}
	o.register(cmd, "operator")
	return cmd
}

func newPartnerStatusCmd(e *env, verb string, status coalitionv1.PartnerStatus) *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   verb + " ID",
		Short: verb + " a partner; takes effect on its next call, without a restart (operator)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.with(func(conn *grpc.ClientConn) error {
				resp, err := coalitionv1.NewAdminServiceClient(conn).SetPartnerStatus(cmd.Context(), &coalitionv1.SetPartnerStatusRequest{Id: args[0], Status: status})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(e.stdout, "%s is now %s\n", resp.GetPartner().GetId(), resp.GetPartner().GetStatus())
				return err
			})
		},
	}
	o.register(cmd, "operator")
	return cmd
}

func newTermsCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{Use: "terms", Short: "A partner's versioned price book (operator)"}
	var o clientOptions
	var t coalitionv1.PriceTerms
	var effective string
	set := &cobra.Command{
		Use:   "set --partner P --issue-price D --reimbursement-rate D [--fee-bps N] [--currency EUR] [--effective-at RFC3339]",
		Short: "Add a new version of a partner's terms",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if effective != "" {
				at, err := time.Parse(time.RFC3339, effective)
				if err != nil {
					return fmt.Errorf("--effective-at %q is not an RFC 3339 time: %w", effective, err)
				}
				t.EffectiveAt = timestamppb.New(at)
			}
			return o.with(func(conn *grpc.ClientConn) error {
				resp, err := coalitionv1.NewAdminServiceClient(conn).SetPriceTerms(cmd.Context(), &coalitionv1.SetPriceTermsRequest{Terms: &t})
				if err != nil {
					return err
				}
				printTerms(e, []*coalitionv1.PriceTerms{resp.GetTerms()})
				return nil
			})
		},
	}
	o.register(set, "operator")
	f := set.Flags()
	f.StringVar(&t.PartnerId, "partner", "", "partner id (required)")
	f.StringVar(&t.IssuePrice, "issue-price", "", "price per point the partner pays when it awards, e.g. 0.0100 (required)")
	f.StringVar(&t.ReimbursementRate, "reimbursement-rate", "", "rate per point the partner receives when members redeem at it (required)")
	f.Int64Var(&t.FeeBps, "fee-bps", 0, "operator fee in basis points of reimbursements")
	f.StringVar(&t.Currency, "currency", "EUR", "settlement currency (ISO 4217)")
	f.StringVar(&t.BreakageShare, "breakage-share", "0", "share of breakage returned to the issuer (0-1)")
	f.StringVar(&effective, "effective-at", "", "when the version takes effect (default now; never in the past)")
	f.StringVar(&t.MaxOutstandingValue, "max-outstanding-value", "", "exposure limit: value issued and not yet settled, in the currency (empty: none)")
	f.Int64Var(&t.MaxPointsPerTransaction, "max-points-per-transaction", 0, "exposure limit: points of one award (0: none)")
	f.Int64Var(&t.MaxPointsPerMemberDay, "max-points-per-member-day", 0, "exposure limit: points awarded to one member per UTC day (0: none)")
	for _, name := range []string{"partner", "issue-price", "reimbursement-rate"} {
		_ = set.MarkFlagRequired(name)
	}
	var so clientOptions
	var partner string
	show := &cobra.Command{
		Use:   "show --partner P",
		Short: "List every version of a partner's terms (CSV)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return so.with(func(conn *grpc.ClientConn) error {
				resp, err := coalitionv1.NewAdminServiceClient(conn).ListPriceTerms(cmd.Context(), &coalitionv1.ListPriceTermsRequest{PartnerId: partner})
				if err != nil {
					return err
				}
				printTerms(e, resp.GetTerms())
				return nil
			})
		},
	}
	so.register(show, "operator")
	show.Flags().StringVar(&partner, "partner", "", "partner id (empty: all)")
	cmd.AddCommand(set, show)
	return cmd
}

func printTerms(e *env, terms []*coalitionv1.PriceTerms) {
	fmt.Fprintln(e.stdout, "partner,version,effective_at,issue_price,reimbursement_rate,fee_bps,currency,breakage_share,max_outstanding_value,max_points_per_transaction,max_points_per_member_day")
	for _, t := range terms {
		fmt.Fprintf(e.stdout, "%s,%d,%s,%s,%s,%d,%s,%s,%s,%d,%d\n", t.GetPartnerId(), t.GetVersion(), t.GetEffectiveAt().AsTime().Format(time.RFC3339),
			t.GetIssuePrice(), t.GetReimbursementRate(), t.GetFeeBps(), t.GetCurrency(), t.GetBreakageShare(),
			t.GetMaxOutstandingValue(), t.GetMaxPointsPerTransaction(), t.GetMaxPointsPerMemberDay())
	}
}
