package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/partners/partnersim"
	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// demoSims are the simulated partner systems `coalition dev --partner-sims` runs, by partner.
type demoSims map[string]*partnersim.Sim

// credited reports the units a demo partner's own program credited to a member (0 without sims).
func (d demoSims) credited(partner, member string) int64 {
	if s, ok := d[partner]; ok {
		return s.CreditedUnits(member)
	}
	return 0
}

// startDemoSims serves a simulated program for every demo partner on a loopback port, with the
// dev CA, and registers each as the partner's endpoint, subscribed to every event type. They
// stop when ctx ends.
func startDemoSims(ctx context.Context, w io.Writer, ca *devca.CA, store *sqlstore.Store, log *slog.Logger) (demoSims, error) {
	tlsCfg, err := partnersim.ServerTLS(ca, time.Now())
	if err != nil {
		return nil, err
	}
	sims := demoSims{}
	for _, p := range demoPartners {
		sim, err := partnersim.New(partnersim.Config{PartnerID: p.ID, Logger: log})
		if err != nil {
			return nil, err
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		srv := sim.NewServer(tlsCfg)
		go func() { _ = srv.Serve(lis) }()
		context.AfterFunc(ctx, srv.Stop)
		ep := settlement.PartnerEndpoint{PartnerID: p.ID, Endpoint: lis.Addr().String(), ServerName: "localhost",
			Events: settlement.EventTypes()}.WithDefaults()
		if _, err := store.SetPartnerEndpoint(ctx, ep, time.Now()); err != nil {
			return nil, fmt.Errorf("register %s's simulated endpoint: %w", p.ID, err)
		}
		sims[p.ID] = sim
		fmt.Fprintf(w, "  simulated %s program at %s (receives every event; credits exchanges 1:1)\n", p.ID, ep.Endpoint)
	}
	return sims, nil
}
