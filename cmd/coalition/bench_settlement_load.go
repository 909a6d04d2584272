package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

const (
	benchLoadMembers = 10_000          // members the award clients spread over
	benchWarmUp      = 2 * time.Second // awards before measuring: connections, caches
)

// benchAwards starts the gateway in-process on pool (like `coalition dev`), runs awards from
// o.clients mTLS clients, measures their rate alone for o.awardSeconds and then while rerun
// runs, and stores both in fig.
func benchAwards(ctx context.Context, w io.Writer, o benchSettlementOptions, dir string, pool *pgxpool.Pool, partners []string,
	log *slog.Logger, fig *benchFigures, rerun func(context.Context) (time.Duration, error)) error {
	certDir := filepath.Join(dir, "certs")
	var ids []devca.Identity
	for _, p := range partners {
		ids = append(ids, devca.Identity{Role: "partner", Name: p, File: "partner-" + p})
	}
	if _, err := devca.EnsureDir(certDir, ids, time.Now()); err != nil {
		return fmt.Errorf("bench certificates: %w", err)
	}
	certs, err := tlsconfig.NewFileSource(filepath.Join(certDir, "gateway.crt"), filepath.Join(certDir, "gateway.key"), filepath.Join(certDir, "ca.crt"))
	if err != nil {
		return err
	}
	gctx, stopGateway := context.WithCancel(ctx)
	defer stopGateway()
	addrc := make(chan string, 1)
	gwErr := make(chan error, 1)
	go func() {
		opts := gatewayOptions{grpcAddr: "127.0.0.1:0", httpAddr: "127.0.0.1:0", trustDomain: gateway.DefaultTrustDomain,
			shutdownTimeout: 5 * time.Second, holdSweepInterval: time.Second, partnerCacheTTL: time.Second, safetyLag: time.Minute,
			rollupInterval: o.rollupInterval, settleWorkers: o.settleWorkers, settleDuty: o.settleDuty}
		gwErr <- runGateway(gctx, opts, pool, certs, log, func(_ context.Context, grpcAddr, _ string) error {
			addrc <- grpcAddr
			return nil
		})
	}()
	var addr string
	select {
	case addr = <-addrc:
	case err := <-gwErr:
		return fmt.Errorf("gateway: %w", err)
	}
	err = measureAwards(ctx, w, o, addr, certDir, partners, fig, rerun)
	stopGateway()
	if gerr := <-gwErr; gerr != nil && !errors.Is(gerr, context.Canceled) && err == nil {
		err = fmt.Errorf("gateway: %w", gerr)
	}
	return err
}

func measureAwards(ctx context.Context, w io.Writer, o benchSettlementOptions, addr, certDir string, partners []string,
	fig *benchFigures, rerun func(context.Context) (time.Duration, error)) error {
	load, err := startAwardLoad(ctx, o.clients, addr, certDir, partners)
	if err != nil {
		return err
	}
	defer load.stop()
	fmt.Fprintf(w, "awards at %d clients through the gateway (mTLS, %s): warming up %s ...\n", o.clients, addr, benchWarmUp)
	time.Sleep(benchWarmUp)
	c0 := load.done.Load()
	time.Sleep(o.awardSeconds)
	fig.awardsAlone = load.done.Load() - c0
	fig.awardAlone = float64(fig.awardsAlone) / o.awardSeconds.Seconds()
	fmt.Fprintf(w, "  alone: %d awards in %s = %.0f/s\n", fig.awardsAlone, o.awardSeconds, fig.awardAlone)
	// Re-run back to back for as long as awards ran alone (at least once): a run much shorter
	// than that would be measured on a few hundred awards.
	c1 := load.done.Load()
	start := time.Now()
	var total time.Duration
	for fig.reruns == 0 || time.Since(start) < o.awardSeconds {
		took, err := rerun(ctx)
		if err != nil {
			return fmt.Errorf("settlement re-run under load: %w", err)
		}
		total += took
		fig.reruns++
	}
	fig.during = time.Since(start)
	fig.rerun = total / time.Duration(fig.reruns)
	fig.awardsDuring = load.done.Load() - c1
	fig.awardDuring = float64(fig.awardsDuring) / fig.during.Seconds()
	fmt.Fprintf(w, "  during %d back-to-back settlement re-runs of the period (%.2fs each, %.2fs in all): %d awards = %.0f/s\n",
		fig.reruns, fig.rerun.Seconds(), fig.during.Seconds(), fig.awardsDuring, fig.awardDuring)
	return load.stop()
}

// awardLoad is o.clients goroutines awarding points in a loop, each on its own connection.
type awardLoad struct {
	done   atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	err    error
	conns  []*grpc.ClientConn
	once   sync.Once
}

func startAwardLoad(ctx context.Context, clients int, addr, certDir string, partners []string) (*awardLoad, error) {
	ctx, cancel := context.WithCancel(ctx)
	l := &awardLoad{cancel: cancel}
	for i := range clients {
		partner := partners[i%len(partners)]
		cfg, err := tlsconfig.LoadClient(certDir, "partner-"+partner, "127.0.0.1")
		if err != nil {
			l.stop()
			return nil, err
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			l.stop()
			return nil, err
		}
		l.conns = append(l.conns, conn)
		client := coalitionv1.NewPointsServiceClient(conn)
		l.wg.Go(func() { l.run(ctx, client, i) })
	}
	return l, nil
}

func (l *awardLoad) run(ctx context.Context, client coalitionv1.PointsServiceClient, id int) {
	for seq := 0; ctx.Err() == nil; seq++ {
		_, err := client.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: fmt.Sprintf("load-%d-%d", id, seq),
			MemberId: fmt.Sprintf("load-m%05d", rand.IntN(benchLoadMembers)), Points: 100, Reference: fmt.Sprintf("receipt-%d-%d", id, seq)})
		if err != nil {
			if ctx.Err() == nil {
				l.mu.Lock()
				l.err = errors.Join(l.err, fmt.Errorf("award: %w", err))
				l.mu.Unlock()
				l.cancel()
			}
			return
		}
		l.done.Add(1)
	}
}

// stop ends the load and returns the first award error, if any.
func (l *awardLoad) stop() error {
	l.once.Do(func() {
		l.cancel()
		l.wg.Wait()
		for _, c := range l.conns {
			c.Close()
		}
	})
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}
