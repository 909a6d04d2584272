package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/spf13/pflag"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/settlement"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// expiryOptions are the coalition's expiry policy and its sweeper (issue 7).
type expiryOptions struct {
	lotLifetime   time.Duration
	sweepInterval time.Duration
	noticeWindow  time.Duration
}

func (o *expiryOptions) register(f *pflag.FlagSet) {
	f.DurationVar(&o.lotLifetime, "lot-lifetime", sqlstore.DefaultLotLifetime,
		"how long awarded points live before they expire into coalition:breakage (coalition policy)")
	f.DurationVar(&o.sweepInterval, "expiry-sweep-interval", settlement.DefaultSweepInterval,
		"how often expired lots are swept, expiring lots announced, settled issuance given back to exposure limits and exposure alerts checked")
	f.DurationVar(&o.noticeWindow, "expiry-notice-window", settlement.DefaultExpiryNotice,
		"how long before a lot expires its points.expiring event is queued (to partners that subscribe)")
}

// runExpirySweeper runs the expiry sweeper until ctx ends; it also feeds the exposure gauge.
func runExpirySweeper(ctx context.Context, o expiryOptions, store *sqlstore.Store, metrics *gateway.Metrics, log *slog.Logger) error {
	sw, err := settlement.NewSweeper(settlement.SweeperConfig{Store: store, Logger: log, Interval: o.sweepInterval,
		NoticeWindow: o.noticeWindow,
		OnExposure: func(partnerID string, ratio float64) {
			metrics.PartnerExposure.WithLabelValues(partnerID).Set(ratio)
		}})
	if err != nil {
		return err
	}
	return sw.Run(ctx)
}
