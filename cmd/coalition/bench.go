package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/status"

	"github.com/coalitionexchange/coalition/gateway"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// benchWorkloads are what `coalition bench --workload` accepts.
var benchWorkloads = map[string]string{
	"award":       "awards only, over --members members and every partner",
	"spread":      "awards and redemptions (60/40) over --members members and every partner",
	"hot-partner": "spread, with every call from the first partner",
	"hot-member":  "awards and redemptions (2:1) on one member from every caller",
	"replay":      "re-sends of awards whose keys were used during warmup (each must replay)",
	"mixed":       "70% awards, 25% redemptions, 5% reversals of earlier awards",
}

type benchOptions struct {
	addr        string
	certsDir    string
	partners    []string
	workload    string
	concurrency int
	duration    time.Duration
	warmup      time.Duration
	maxOps      int64
	members     int
	timeout     time.Duration
	progress    time.Duration
	connsPer    int
	jsonOut     string
}

func newBenchCmd(e *env) *cobra.Command {
	var o benchOptions
	names := make([]string, 0, len(benchWorkloads))
	for n := range benchWorkloads {
		names = append(names, n)
	}
	sort.Strings(names)
	var help strings.Builder
	for _, n := range names {
		fmt.Fprintf(&help, "\n  %-12s %s", n, benchWorkloads[n])
	}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Drive a running gateway with a load workload over mTLS and report throughput and latency",
		Long: `bench calls the Points API of a running gateway (coalition dev's by default) from
--concurrency workers for --warmup, then measures for --duration (or until --max-ops calls).
It prints progress every --progress, then throughput, p50/p95/p99/max latency of successful
calls, and errors by gRPC code and reason. Workloads:` + help.String(),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runBench(cmd.Context(), e.stdout, o)
			if err != nil {
				return err
			}
			if o.jsonOut != "" {
				b, err := json.MarshalIndent(res, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
					return err
				}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.addr, "addr", "127.0.0.1:7443", "gateway gRPC address")
	f.StringVar(&o.certsDir, "certs-dir", filepath.Join(os.TempDir(), "coalition-dev", "certs"), "directory with ca.crt and partner-<id>.crt/.key")
	f.StringSliceVar(&o.partners, "partners", []string{"acme-air", "bean-coffee", "city-fuel"}, "partners to call as (certificates partner-<id> in --certs-dir)")
	f.StringVar(&o.workload, "workload", "spread", "workload: "+strings.Join(names, ", "))
	f.IntVar(&o.concurrency, "concurrency", 32, "concurrent callers (each waits for its answer before the next call)")
	f.DurationVar(&o.duration, "duration", 20*time.Second, "how long to measure")
	f.DurationVar(&o.warmup, "warmup", 3*time.Second, "how long to run before measuring (replay prepares its keys here)")
	f.Int64Var(&o.maxOps, "max-ops", 10_000_000, "stop measuring after this many calls")
	f.IntVar(&o.members, "members", 100_000, "members the spread workloads draw from")
	f.DurationVar(&o.timeout, "timeout", 10*time.Second, "deadline of each call")
	f.DurationVar(&o.progress, "progress", 5*time.Second, "how often to print progress (0: never)")
	f.IntVar(&o.connsPer, "conns", 4, "gRPC connections per partner")
	f.StringVar(&o.jsonOut, "json", "", "also write the result as JSON to this file")
	return cmd
}

// benchResult is what bench prints and writes with --json. Latencies are of successful calls.
type benchResult struct {
	Workload    string           `json:"workload"`
	Addr        string           `json:"addr"`
	Concurrency int              `json:"concurrency"`
	Partners    []string         `json:"partners"`
	Started     time.Time        `json:"started"`
	Seconds     float64          `json:"seconds"`
	Calls       int64            `json:"calls"`
	OK          int64            `json:"ok"`
	Throughput  float64          `json:"throughput_ok_per_sec"`
	LatencyMS   benchLatency     `json:"latency_ms"`
	Errors      map[string]int64 `json:"errors"` // "CODE REASON" -> count
}

type benchLatency struct {
	Mean float64 `json:"mean"`
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Max  float64 `json:"max"`
}

// benchWorker is one caller. Its state is its own: no locks on the call path.
type benchWorker struct {
	id      int
	o       *benchOptions
	rng     *rand.Rand
	clients map[string]coalitionv1.PointsServiceClient
	keyBase string
	seq     int64

	// Members this worker awarded to and the points it believes they have (spread workloads
	// own disjoint members, so the belief is exact unless a call failed ambiguously).
	funded  []string
	balance map[string]int64
	awards  []loadAward   // recent awards, candidates for reversal (mixed)
	replays []*loadReplay // prepared during warmup (replay)
	next    int

	hist   histogram
	errors map[string]int64
	calls  int64
	ok     int64
}

type loadAward struct {
	partner, member, txnID string
	points                 int64
}

type loadReplay struct {
	partner string
	req     *coalitionv1.AwardRequest
}

func runBench(ctx context.Context, w io.Writer, o benchOptions) (*benchResult, error) {
	if _, ok := benchWorkloads[o.workload]; !ok {
		return nil, fmt.Errorf("--workload %q: want one of award, spread, hot-partner, hot-member, replay, mixed", o.workload)
	}
	if o.concurrency < 1 || o.members < 1 || o.connsPer < 1 || len(o.partners) == 0 || o.duration <= 0 || o.maxOps < 1 {
		return nil, errors.New("--concurrency, --members, --conns, --max-ops, --duration and --partners must be positive")
	}
	if o.workload == "hot-partner" {
		o.partners = o.partners[:1]
	}
	conns := map[string][]coalitionv1.PointsServiceClient{}
	for _, p := range o.partners {
		for range o.connsPer {
			conn, err := dialPartner(o.addr, o.certsDir, p)
			if err != nil {
				return nil, fmt.Errorf("dial as %s: %w", p, err)
			}
			defer conn.Close()
			conns[p] = append(conns[p], coalitionv1.NewPointsServiceClient(conn))
		}
	}
	run := randomHex(4)
	workers := make([]*benchWorker, o.concurrency)
	for i := range workers {
		bw := &benchWorker{id: i, o: &o, rng: rand.New(rand.NewPCG(rand.Uint64(), uint64(i))), clients: map[string]coalitionv1.PointsServiceClient{},
			keyBase: fmt.Sprintf("bench-%s-%d-", run, i), balance: map[string]int64{}, errors: map[string]int64{}}
		for p, cs := range conns {
			bw.clients[p] = cs[i%len(cs)]
		}
		workers[i] = bw
	}
	fmt.Fprintf(w, "bench %s: %d callers as %s against %s; warmup %s, measuring %s (at most %d calls)\n",
		o.workload, o.concurrency, strings.Join(o.partners, ","), o.addr, o.warmup, o.duration, o.maxOps)

	// Warmup: same calls, not recorded; the replay workload records its requests here.
	if err := benchPhase(ctx, workers, o.warmup, 0, false, nil); err != nil {
		return nil, err
	}
	if o.workload == "replay" {
		var total int
		for _, bw := range workers {
			for len(bw.replays) < 20 && ctx.Err() == nil { // a floor, whatever the warmup
				bw.prepareReplay(ctx)
			}
			total += len(bw.replays)
		}
		fmt.Fprintf(w, "  replay: %d keys prepared\n", total)
	}
	for _, bw := range workers {
		bw.hist, bw.calls, bw.ok, bw.errors = histogram{}, 0, 0, map[string]int64{}
	}

	var calls, oks atomic.Int64
	stopProgress := make(chan struct{})
	var progressDone sync.WaitGroup
	started := time.Now()
	if o.progress > 0 {
		progressDone.Add(1)
		go func() {
			defer progressDone.Done()
			t := time.NewTicker(o.progress)
			defer t.Stop()
			var lastOK int64
			last := started
			for {
				select {
				case <-stopProgress:
					return
				case now := <-t.C:
					ok := oks.Load()
					fmt.Fprintf(w, "  %5.0fs  %8.0f ok/s  calls %d  errors %d\n", now.Sub(started).Seconds(),
						float64(ok-lastOK)/now.Sub(last).Seconds(), calls.Load(), calls.Load()-ok)
					lastOK, last = ok, now
				}
			}
		}()
	}
	err := benchPhase(ctx, workers, o.duration, o.maxOps, true, func(ok bool) {
		calls.Add(1)
		if ok {
			oks.Add(1)
		}
	})
	elapsed := time.Since(started)
	close(stopProgress)
	progressDone.Wait()
	if err != nil {
		return nil, err
	}

	res := &benchResult{Workload: o.workload, Addr: o.addr, Concurrency: o.concurrency, Partners: o.partners,
		Started: started.UTC(), Seconds: elapsed.Seconds(), Errors: map[string]int64{}}
	var h histogram
	for _, bw := range workers {
		h.merge(&bw.hist)
		res.Calls += bw.calls
		res.OK += bw.ok
		for k, n := range bw.errors {
			res.Errors[k] += n
		}
	}
	res.Throughput = float64(res.OK) / elapsed.Seconds()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.LatencyMS = benchLatency{Mean: ms(h.mean()), P50: ms(h.quantile(0.50)), P95: ms(h.quantile(0.95)), P99: ms(h.quantile(0.99)), Max: ms(h.max)}
	printBench(w, res)
	return res, nil
}

// benchPhase runs every worker for d or until limit calls (0: no limit) and waits for them.
func benchPhase(ctx context.Context, workers []*benchWorker, d time.Duration, limit int64, record bool, observe func(ok bool)) error {
	if d <= 0 {
		return nil
	}
	end := time.Now().Add(d)
	ctx, cancel := context.WithDeadline(ctx, end)
	defer cancel()
	var issued atomic.Int64
	var wg sync.WaitGroup
	for _, bw := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil && time.Now().Before(end) {
				if limit > 0 && issued.Add(1) > limit {
					return
				}
				t0 := time.Now()
				err := bw.step(ctx)
				lat := time.Since(t0)
				if err != nil && (ctx.Err() != nil || !time.Now().Before(end)) {
					// Cut off by the end of the phase (gRPC fails a call whose deadline has
					// passed before the context's timer fires): not a server error.
					return
				}
				if !record {
					continue
				}
				bw.calls++
				if err == nil {
					bw.ok++
					bw.hist.record(lat)
				} else {
					bw.errors[errorKey(err)]++
				}
				if observe != nil {
					observe(err == nil)
				}
			}
		}()
	}
	wg.Wait()
	return nil
}

// errorKey names an error by gRPC code and google.rpc.ErrorInfo reason.
func errorKey(err error) string {
	if errors.Is(err, errNotReplayed) {
		return "NOT_REPLAYED"
	}
	st, _ := status.FromError(err)
	if r := gateway.ReasonOf(err); r != "" {
		return st.Code().String() + " " + r
	}
	return st.Code().String()
}

var errNotReplayed = errors.New("a re-sent key was applied again instead of replayed")

func (bw *benchWorker) key() string {
	bw.seq++
	return fmt.Sprintf("%s%d", bw.keyBase, bw.seq)
}

func (bw *benchWorker) partner() string {
	ps := bw.o.partners
	return ps[bw.rng.IntN(len(ps))]
}

// member returns one of this worker's own members: member i belongs to worker i % concurrency.
func (bw *benchWorker) member() string {
	per := max(bw.o.members/bw.o.concurrency, 1)
	return fmt.Sprintf("BM-%07d", bw.rng.IntN(per)*bw.o.concurrency+bw.id)
}

// step makes one call of the workload.
func (bw *benchWorker) step(ctx context.Context) error {
	switch bw.o.workload {
	case "award":
		return bw.award(ctx, bw.member())
	case "spread", "hot-partner":
		if bw.rng.IntN(100) < 40 && len(bw.funded) > 0 {
			return bw.redeem(ctx)
		}
		return bw.award(ctx, bw.member())
	case "hot-member":
		if bw.rng.IntN(3) == 0 {
			return bw.call(ctx, func(c coalitionv1.PointsServiceClient, cctx context.Context) error {
				_, err := c.Redeem(cctx, &coalitionv1.RedeemRequest{IdempotencyKey: bw.key(), MemberId: "BM-HOT", Points: 10, Reference: "bench"})
				return err
			})
		}
		return bw.award(ctx, "BM-HOT")
	case "replay":
		if len(bw.replays) == 0 {
			return bw.prepareReplay(ctx)
		}
		r := bw.replays[bw.next%len(bw.replays)]
		bw.next++
		return bw.call(ctx, func(_ coalitionv1.PointsServiceClient, cctx context.Context) error {
			resp, err := bw.clients[r.partner].Award(cctx, r.req)
			if err == nil && !resp.GetReplayed() {
				return errNotReplayed
			}
			return err
		})
	case "mixed":
		switch n := bw.rng.IntN(100); {
		case n < 5 && len(bw.awards) > 0:
			return bw.reverse(ctx)
		case n < 30 && len(bw.funded) > 0:
			return bw.redeem(ctx)
		default:
			return bw.award(ctx, bw.member())
		}
	}
	return fmt.Errorf("unknown workload %q", bw.o.workload)
}

func (bw *benchWorker) call(ctx context.Context, fn func(c coalitionv1.PointsServiceClient, cctx context.Context) error) error {
	cctx, cancel := context.WithTimeout(ctx, bw.o.timeout)
	defer cancel()
	return fn(bw.clients[bw.partner()], cctx)
}

func (bw *benchWorker) award(ctx context.Context, member string) error {
	p := bw.partner()
	points := int64(50 + bw.rng.IntN(200))
	cctx, cancel := context.WithTimeout(ctx, bw.o.timeout)
	defer cancel()
	resp, err := bw.clients[p].Award(cctx, &coalitionv1.AwardRequest{IdempotencyKey: bw.key(), MemberId: member, Points: points, Reference: "bench"})
	if err != nil {
		return err
	}
	if member != "BM-HOT" {
		if bw.balance[member] == 0 {
			bw.funded = append(bw.funded, member)
		}
		bw.balance[member] += points
		if bw.o.workload == "mixed" {
			bw.awards = append(bw.awards, loadAward{p, member, resp.GetTransaction().GetId(), points})
			if len(bw.awards) > 1000 {
				bw.awards = bw.awards[len(bw.awards)-1000:]
			}
		}
	}
	return nil
}

// redeem spends part of the balance of a member this worker funded.
func (bw *benchWorker) redeem(ctx context.Context) error {
	i := bw.rng.IntN(len(bw.funded))
	m := bw.funded[i]
	have := bw.balance[m]
	points := min(have, int64(10+bw.rng.IntN(50)))
	cctx, cancel := context.WithTimeout(ctx, bw.o.timeout)
	defer cancel()
	_, err := bw.clients[bw.partner()].Redeem(cctx, &coalitionv1.RedeemRequest{IdempotencyKey: bw.key(), MemberId: m, Points: points, Reference: "bench"})
	if err != nil {
		return err
	}
	bw.balance[m] -= points
	if bw.balance[m] <= 0 {
		bw.funded[i] = bw.funded[len(bw.funded)-1]
		bw.funded = bw.funded[:len(bw.funded)-1]
		delete(bw.balance, m)
	}
	return nil
}

// reverse undoes one of this worker's earlier awards, at the partner that made it.
func (bw *benchWorker) reverse(ctx context.Context) error {
	i := bw.rng.IntN(len(bw.awards))
	a := bw.awards[i]
	bw.awards[i] = bw.awards[len(bw.awards)-1]
	bw.awards = bw.awards[:len(bw.awards)-1]
	cctx, cancel := context.WithTimeout(ctx, bw.o.timeout)
	defer cancel()
	_, err := bw.clients[a.partner].Reverse(cctx, &coalitionv1.ReverseRequest{IdempotencyKey: bw.key(), TransactionId: a.txnID, Reason: "bench"})
	if err != nil {
		return err
	}
	if _, ok := bw.balance[a.member]; ok {
		bw.balance[a.member] -= a.points // may go to zero or below: redeem stops picking it
		if bw.balance[a.member] <= 0 {
			for j, m := range bw.funded {
				if m == a.member {
					bw.funded[j] = bw.funded[len(bw.funded)-1]
					bw.funded = bw.funded[:len(bw.funded)-1]
					break
				}
			}
			delete(bw.balance, a.member)
		}
	}
	return nil
}

// prepareReplay makes one award and keeps its request to re-send when measuring.
func (bw *benchWorker) prepareReplay(ctx context.Context) error {
	p := bw.partner()
	req := &coalitionv1.AwardRequest{IdempotencyKey: bw.key(), MemberId: bw.member(), Points: int64(50 + bw.rng.IntN(200)), Reference: "bench"}
	cctx, cancel := context.WithTimeout(ctx, bw.o.timeout)
	defer cancel()
	if _, err := bw.clients[p].Award(cctx, req); err != nil {
		return err
	}
	if len(bw.replays) < 10_000 {
		bw.replays = append(bw.replays, &loadReplay{partner: p, req: req})
	}
	return nil
}

func printBench(w io.Writer, r *benchResult) {
	fmt.Fprintf(w, "\n%s, %d callers, %.1fs: %d calls, %d ok, %.1f ok/s\n", r.Workload, r.Concurrency, r.Seconds, r.Calls, r.OK, r.Throughput)
	l := r.LatencyMS
	fmt.Fprintf(w, "latency of ok calls (ms): mean %.3f  p50 %.3f  p95 %.3f  p99 %.3f  max %.3f\n", l.Mean, l.P50, l.P95, l.P99, l.Max)
	var errs int64
	keys := make([]string, 0, len(r.Errors))
	for k, n := range r.Errors {
		keys = append(keys, k)
		errs += n
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		fmt.Fprintln(w, "errors: none")
	}
	for _, k := range keys {
		fmt.Fprintf(w, "errors: %-50s %d\n", k, r.Errors[k])
	}
	// One line for scripts (scripts/bench.sh reads it).
	fmt.Fprintf(w, "summary workload=%s concurrency=%d seconds=%.1f calls=%d ok=%d errors=%d throughput=%.1f p50_ms=%.3f p95_ms=%.3f p99_ms=%.3f max_ms=%.3f\n",
		r.Workload, r.Concurrency, r.Seconds, r.Calls, r.OK, errs, r.Throughput, l.P50, l.P95, l.P99, l.Max)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return hex.EncodeToString(b)
}
