package partners

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/coalitionexchange/coalition/settlement"
)

// OutboxStore is what the Dispatcher needs from the books (settlement/sqlstore implements it).
type OutboxStore interface {
	// OutboxPartners returns the configured partners with pending events.
	OutboxPartners(ctx context.Context) ([]string, error)
	// ClaimOutboxLease takes or renews holder's lease on a partner's queue.
	ClaimOutboxLease(ctx context.Context, partnerID, holder string, now time.Time, ttl time.Duration) (bool, error)
	// ReleaseOutboxLease gives the lease up.
	ReleaseOutboxLease(ctx context.Context, partnerID, holder string) error
	// OutboxHead returns a partner's pending events in delivery order.
	OutboxHead(ctx context.Context, partnerID string, limit int) ([]settlement.OutboxEvent, error)
	// MarkOutboxDelivered marks events delivered, or dead when refused for good.
	MarkOutboxDelivered(ctx context.Context, delivered, dead []string, reason string, now time.Time) error
	// RecordOutboxFailure counts a failed attempt; events at maxAttempts become dead.
	RecordOutboxFailure(ctx context.Context, ids []string, cause string, next time.Time, maxAttempts int) (int64, error)
}

// DispatcherConfig configures a Dispatcher. Zero values mean defaults.
type DispatcherConfig struct {
	Store    OutboxStore // required
	Partners *Registry   // required
	// Holder names this replica in the per-partner leases; default host name and pid.
	Holder       string
	Logger       *slog.Logger     // default slog.Default()
	Now          func() time.Time // default time.Now
	PollInterval time.Duration    // how often queues are looked at; default 500ms
	BatchSize    int              // events per DeliverEvents call; default 100 (the partner contract's bound)
	// MaxAttempts is how many failed deliveries make an event dead; default 20.
	MaxAttempts int
	BackoffBase time.Duration // delay after a first failure; default 1s, doubling, with jitter
	BackoffMax  time.Duration // default 5m
	LeaseTTL    time.Duration // a partner queue's lease; default 30s, renewed per batch
	// MaxBatchesPerTurn bounds how long one turn holds a partner's lease; default 50.
	MaxBatchesPerTurn int
}

// Dispatcher delivers outbox events to partners, in order per partner, at least once (the
// partner dedups by event id). A partner's queue is parked while its breaker is open.
type Dispatcher struct {
	cfg  DispatcherConfig
	log  *slog.Logger
	mu   sync.Mutex
	busy map[string]bool
}

// NewDispatcher returns a Dispatcher.
func NewDispatcher(cfg DispatcherConfig) (*Dispatcher, error) {
	if cfg.Store == nil || cfg.Partners == nil {
		return nil, errors.New("partners: DispatcherConfig.Store and Partners are required")
	}
	if cfg.Holder == "" {
		host, _ := os.Hostname()
		cfg.Holder = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.PollInterval = orDefault(cfg.PollInterval, 500*time.Millisecond)
	cfg.BackoffBase = orDefault(cfg.BackoffBase, time.Second)
	cfg.BackoffMax = orDefault(cfg.BackoffMax, 5*time.Minute)
	cfg.LeaseTTL = orDefault(cfg.LeaseTTL, 30*time.Second)
	if cfg.BatchSize <= 0 || cfg.BatchSize > 100 {
		cfg.BatchSize = 100
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 20
	}
	if cfg.MaxBatchesPerTurn <= 0 {
		cfg.MaxBatchesPerTurn = 50
	}
	return &Dispatcher{cfg: cfg, log: cfg.Logger, busy: map[string]bool{}}, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Run drains partner queues every PollInterval until ctx ends. Each partner is drained by its
// own goroutine, so a slow partner holds up only its own queue.
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(d.cfg.PollInterval)
	defer t.Stop()
	for {
		ids, err := d.cfg.Store.OutboxPartners(ctx)
		if err != nil && ctx.Err() == nil {
			d.log.Error("outbox: find partners with pending events", "err", err)
		}
		for _, id := range ids {
			if !d.enter(id) {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer d.leave(id)
				d.drain(ctx, id)
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (d *Dispatcher) enter(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.busy[id] {
		return false
	}
	d.busy[id] = true
	return true
}

func (d *Dispatcher) leave(id string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.busy, id)
}

// drain delivers partnerID's due events batch by batch while this replica holds the lease.
func (d *Dispatcher) drain(ctx context.Context, partnerID string) {
	defer func() {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := d.cfg.Store.ReleaseOutboxLease(rctx, partnerID, d.cfg.Holder); err != nil {
			d.log.Warn("outbox: release lease", "partner", partnerID, "err", err)
		}
	}()
	for range d.cfg.MaxBatchesPerTurn {
		more, err := d.deliverBatch(ctx, partnerID)
		if err != nil && ctx.Err() == nil {
			d.log.Error("outbox: deliver", "partner", partnerID, "err", err)
		}
		if !more || err != nil {
			return
		}
	}
}

// deliverBatch claims the lease and delivers one batch; it reports whether to go on.
func (d *Dispatcher) deliverBatch(ctx context.Context, partnerID string) (bool, error) {
	now := d.cfg.Now()
	held, err := d.cfg.Store.ClaimOutboxLease(ctx, partnerID, d.cfg.Holder, now, d.cfg.LeaseTTL)
	if err != nil || !held {
		return false, err
	}
	if d.cfg.Partners.State(partnerID, OpDeliverEvents) == gobreaker.StateOpen {
		return false, nil // parked until the breaker lets a probe through
	}
	head, err := d.cfg.Store.OutboxHead(ctx, partnerID, d.cfg.BatchSize)
	if err != nil || len(head) == 0 || head[0].NextAttemptAt.After(now) {
		return false, err
	}
	client, err := d.cfg.Partners.Client(ctx, partnerID)
	if err != nil {
		return false, err
	}
	results, err := client.DeliverEvents(ctx, head)
	if NotSent(err) || (err != nil && ctx.Err() != nil) {
		return false, nil // parked (breaker or bulkhead) or shutting down: nothing counted
	}
	if err != nil {
		return false, d.recordFailure(ctx, partnerID, head, err)
	}
	var delivered, dead []string
	for i, r := range results {
		if r == DeliveryRejected {
			dead = append(dead, head[i].ID)
		} else {
			delivered = append(delivered, head[i].ID)
		}
	}
	if len(dead) > 0 {
		d.log.Warn("outbox: partner rejected events; marked dead", "partner", partnerID, "count", len(dead))
	}
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return len(head) == d.cfg.BatchSize, d.cfg.Store.MarkOutboxDelivered(mctx, delivered, dead, "rejected by the partner", d.cfg.Now())
}

func (d *Dispatcher) recordFailure(ctx context.Context, partnerID string, head []settlement.OutboxEvent, cause error) error {
	ids := make([]string, len(head))
	for i, e := range head {
		ids[i] = e.ID
	}
	next := d.cfg.Now().Add(jitter(d.cfg.BackoffBase, d.cfg.BackoffMax, head[0].Attempts+1))
	dead, err := d.cfg.Store.RecordOutboxFailure(ctx, ids, cause.Error(), next, d.cfg.MaxAttempts)
	if dead > 0 {
		d.log.Error("outbox: events dead after too many attempts", "partner", partnerID, "count", dead, "err", cause)
	}
	return err
}
