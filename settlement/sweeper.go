package settlement

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/cockroachdb/apd/v3"
)

// Exposure is a partner's issued-and-unsettled value against its outstanding-value limit.
type Exposure struct {
	PartnerID   string
	Limit       apd.Decimal
	Outstanding apd.Decimal
	Ratio       float64 // Outstanding / Limit
	Alerted     bool    // the alert is raised
}

// SweepStore is what the Sweeper needs of the books. Each method does a bounded amount of
// work, each item (or batch) in its own transaction.
type SweepStore interface {
	// ExpireLots expires up to limit lots whose expiry passed at now; it returns how many.
	ExpireLots(ctx context.Context, now time.Time, limit int) (int, error)
	// NotifyExpiring queues points.expiring events for up to limit lots expiring within
	// window, once per lot; it returns how many lots it announced.
	NotifyExpiring(ctx context.Context, now time.Time, window time.Duration, limit int) (int, error)
	// ReleaseSettledExposure gives settled periods' issuance back to the exposure allowances.
	ReleaseSettledExposure(ctx context.Context, now time.Time) (int, error)
	// Exposures reads every limited partner's exposure.
	Exposures(ctx context.Context) ([]Exposure, error)
	// SetExposureAlert raises or clears a partner's alert and reports whether it changed.
	SetExposureAlert(ctx context.Context, e Exposure, raised bool, now time.Time) (bool, error)
}

// Defaults of SweeperConfig.
const (
	DefaultSweepInterval     = time.Minute
	DefaultSweepBatch        = 100
	DefaultSweepMaxBatches   = 100
	DefaultExpiryNotice      = 7 * 24 * time.Hour
	DefaultExposureAlertRate = 0.8
)

// SweeperConfig configures a Sweeper. Zero values mean the defaults above.
type SweeperConfig struct {
	Store  SweepStore // required
	Logger *slog.Logger
	Now    func() time.Time
	// Interval between sweeps.
	Interval time.Duration
	// Batch bounds the lots one store call handles; MaxBatches the calls of one sweep.
	Batch, MaxBatches int
	// NoticeWindow is how long before expiry a lot's points.expiring event is queued.
	NoticeWindow time.Duration
	// AlertRatio is the share of the outstanding limit in use that raises the alert.
	AlertRatio float64
	// OnExposure, when set, is told every limited partner's ratio on each sweep (metrics).
	OnExposure func(partnerID string, ratio float64)
}

// Sweeper expires lots, announces expiring ones, gives settled issuance back to exposure
// allowances and raises exposure alerts — off the request path, in bounded batches.
type Sweeper struct{ cfg SweeperConfig }

// NewSweeper returns a Sweeper.
func NewSweeper(cfg SweeperConfig) (*Sweeper, error) {
	if cfg.Store == nil {
		return nil, errors.New("settlement: SweeperConfig.Store is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultSweepInterval
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultSweepBatch
	}
	if cfg.MaxBatches <= 0 {
		cfg.MaxBatches = DefaultSweepMaxBatches
	}
	if cfg.NoticeWindow <= 0 {
		cfg.NoticeWindow = DefaultExpiryNotice
	}
	if cfg.AlertRatio <= 0 {
		cfg.AlertRatio = DefaultExposureAlertRate
	}
	return &Sweeper{cfg: cfg}, nil
}

// SweepResult counts what one sweep did.
type SweepResult struct {
	Expired, Notified, Released, Alerts int
}

// Sweep runs one pass: each part is bounded by Batch × MaxBatches items.
func (s *Sweeper) Sweep(ctx context.Context) (SweepResult, error) {
	var r SweepResult
	now := s.cfg.Now()
	var errs []error
	for i := 0; i < s.cfg.MaxBatches && ctx.Err() == nil; i++ {
		n, err := s.cfg.Store.ExpireLots(ctx, now, s.cfg.Batch)
		r.Expired += n
		if err != nil || n < s.cfg.Batch {
			errs = append(errs, err)
			break
		}
	}
	for i := 0; i < s.cfg.MaxBatches && ctx.Err() == nil; i++ {
		n, err := s.cfg.Store.NotifyExpiring(ctx, now, s.cfg.NoticeWindow, s.cfg.Batch)
		r.Notified += n
		if err != nil || n < s.cfg.Batch {
			errs = append(errs, err)
			break
		}
	}
	n, err := s.cfg.Store.ReleaseSettledExposure(ctx, now)
	r.Released = n
	errs = append(errs, err)
	r.Alerts, err = s.exposureAlerts(ctx, now)
	errs = append(errs, err)
	return r, errors.Join(errs...)
}

// exposureAlerts raises the alert of partners at or over AlertRatio (a log line and, through
// the store, an outbox event) and clears it when they fall back below.
func (s *Sweeper) exposureAlerts(ctx context.Context, now time.Time) (int, error) {
	exps, err := s.cfg.Store.Exposures(ctx)
	if err != nil {
		return 0, err
	}
	raised := 0
	for _, e := range exps {
		if s.cfg.OnExposure != nil {
			s.cfg.OnExposure(e.PartnerID, e.Ratio)
		}
		over := e.Ratio >= s.cfg.AlertRatio
		if over == e.Alerted {
			continue
		}
		changed, err := s.cfg.Store.SetExposureAlert(ctx, e, over, now)
		if err != nil {
			return raised, err
		}
		if changed && over {
			raised++
			s.cfg.Logger.Warn("partner exposure over alert threshold", "partner", e.PartnerID, "ratio", e.Ratio,
				"outstanding", e.Outstanding.Text('f'), "limit", e.Limit.Text('f'))
		}
	}
	return raised, nil
}

// Run sweeps every Interval until ctx ends; errors are logged, not fatal.
func (s *Sweeper) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		r, err := s.Sweep(ctx)
		if err != nil && ctx.Err() == nil {
			s.cfg.Logger.Error("expiry sweep", "err", err)
		}
		if r.Expired+r.Notified+r.Released > 0 {
			s.cfg.Logger.Info("expiry sweep", "expired_lots", r.Expired, "announced_lots", r.Notified, "released_periods", r.Released)
		}
	}
}
