package gateway

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the gateway's Prometheus collectors.
type Metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// TxnRetries counts ledger transaction retries; wire it to sqlstore.RunnerConfig.OnRetry.
	TxnRetries prometheus.Counter
	// GroupCommitBatch observes each group-commit batch's size, GroupCommitSplits counts
	// batches re-applied one command at a time; wire them to sqlstore.GroupCommitConfig.OnBatch.
	GroupCommitBatch  prometheus.Histogram
	GroupCommitSplits prometheus.Counter
	certs             *certExpiry // coalition_certificate_expiry_seconds (certmetrics.go)
	// settlementRuns counts runs by result (published, failed, error); settlementSeconds
	// times them.
	settlementRuns    *prometheus.CounterVec
	settlementSeconds prometheus.Histogram
	// PartnerExposure is each limited partner's outstanding value over its limit; the expiry
	// sweeper sets it (settlement.SweeperConfig.OnExposure).
	PartnerExposure *prometheus.GaugeVec
}

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coalition_grpc_requests_total",
			Help: "gRPC requests handled, by method, status code and calling partner.",
		}, []string{"method", "code", "partner"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "coalition_grpc_request_duration_seconds",
			Help:    "gRPC request latency by method.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}, []string{"method"}),
		TxnRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coalition_ledger_txn_retries_total",
			Help: "Ledger transactions re-run after a serialization failure or deadlock.",
		}),
		GroupCommitBatch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "coalition_ledger_group_commit_batch_size",
			Help:    "Commands applied per group-commit transaction (replays answered from the key lookup not counted).",
			Buckets: []float64{1, 2, 4, 8, 16, 32},
		}),
		GroupCommitSplits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coalition_ledger_group_commit_splits_total",
			Help: "Group-commit batches whose transaction failed and whose commands were applied one by one.",
		}),
		certs: newCertExpiry(time.Now),
		settlementRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coalition_settlement_runs_total",
			Help: "Settlement runs by result: published, failed (a check failed) or error (no run stored).",
		}, []string{"result"}),
		settlementSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "coalition_settlement_run_duration_seconds",
			Help:    "Duration of settlement runs, including the period close and storing the run.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 14),
		}),
		PartnerExposure: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "coalition_partner_exposure_ratio",
			Help: "Issued-and-unsettled value over the partner's outstanding-value limit (alert at 0.8).",
		}, []string{"partner"}),
	}
	for _, result := range []string{"published", "failed", "error"} {
		m.settlementRuns.WithLabelValues(result) // export zeros, so alerts see the series
	}
	for _, c := range []prometheus.Collector{m.requests, m.latency, m.TxnRetries, m.GroupCommitBatch, m.GroupCommitSplits, m.certs, m.settlementRuns, m.settlementSeconds, m.PartnerExposure} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
