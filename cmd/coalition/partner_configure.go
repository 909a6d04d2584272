package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// newPartnerConfigureCmd is `coalition partner configure`: how the coalition calls a partner.
func newPartnerConfigureCmd(e *env) *cobra.Command {
	var o clientOptions
	var ep coalitionv1.PartnerEndpoint
	var callTimeout, exchangeTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "configure --id ID --endpoint HOST:PORT [--events a,b] [--ratio-units N --ratio-points M]",
		Short: "Set a partner's endpoint, timeouts, bulkhead, exchange ratio and subscribed events (operator)",
		Long: `configure stores how the coalition calls the partner's PartnerProgramService (mTLS with the
gateway's client certificate): its endpoint, the deadline of event deliveries and of each
exchange attempt, how many calls may be in flight to it (bulkhead), the exchange ratio
(ratio-units partner units per ratio-points coalition points) and the events it receives.
Gateways pick the change up within seconds.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ep.CallTimeoutMs, ep.ExchangeTimeoutMs = callTimeout.Milliseconds(), exchangeTimeout.Milliseconds()
			conn, err := o.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			resp, err := coalitionv1.NewAdminServiceClient(conn).ConfigurePartnerEndpoint(cmd.Context(),
				&coalitionv1.ConfigurePartnerEndpointRequest{Endpoint: &ep})
			if err != nil {
				return err
			}
			printEndpoints(e, []*coalitionv1.PartnerEndpoint{resp.GetEndpoint()})
			return nil
		},
	}
	o.register(cmd, "operator")
	f := cmd.Flags()
	f.StringVar(&ep.PartnerId, "id", "", "partner id (required)")
	f.StringVar(&ep.Endpoint, "endpoint", "", "host:port of the partner's PartnerProgramService (required)")
	f.StringVar(&ep.ServerName, "server-name", "", "name to verify the partner's server certificate against (default the endpoint's host)")
	f.DurationVar(&callTimeout, "call-timeout", 2*time.Second, "deadline of one event delivery")
	f.DurationVar(&exchangeTimeout, "exchange-timeout", 2*time.Second, "deadline of one exchange credit attempt")
	f.Int64Var(&ep.MaxInFlight, "max-in-flight", 16, "bulkhead: calls in flight to the partner at most")
	f.Int64Var(&ep.RatioUnits, "ratio-units", 1, "partner units per --ratio-points coalition points")
	f.Int64Var(&ep.RatioPoints, "ratio-points", 1, "coalition points per --ratio-units partner units")
	f.StringSliceVar(&ep.Events, "events", nil, "subscribed events: points.redeemed, points.awarded_elsewhere, settlement.statement_ready")
	_ = cmd.MarkFlagRequired("id")
	_ = cmd.MarkFlagRequired("endpoint")
	return cmd
}

func printEndpoints(e *env, eps []*coalitionv1.PartnerEndpoint) {
	fmt.Fprintln(e.stdout, "partner,endpoint,call_timeout_ms,exchange_timeout_ms,max_in_flight,ratio,events")
	for _, p := range eps {
		fmt.Fprintf(e.stdout, "%s,%s,%d,%d,%d,%d:%d,%s\n", p.GetPartnerId(), p.GetEndpoint(), p.GetCallTimeoutMs(),
			p.GetExchangeTimeoutMs(), p.GetMaxInFlight(), p.GetRatioUnits(), p.GetRatioPoints(), strings.Join(p.GetEvents(), " "))
	}
}
