package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/coalitionexchange/coalition/gateway"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
)

// soakOptions configure `coalition soak`, the correctness workload under crashes and retries.
type soakOptions struct {
	bin        string        // the coalition binary run as `dev`; default this executable
	dataDir    string        // persistent --data-dir of the gateway; default a temporary one
	keep       bool          // keep dataDir
	workers    int           // concurrent clients
	duration   time.Duration // how long clients start new operations (kills may extend it)
	kills      int           // SIGKILLs of the gateway process
	injectRate float64       // COALITION_TEST_INJECT_FAILURE_RATE of the gateway
	members    int           // members the clients share
	dupRate    float64       // fraction of operations also sent concurrently by a second caller
	resolveFor time.Duration // how long a client re-sends an unknown outcome before giving up
	rateLimit  int           // the gateway's --partner-rate-limit (0: none); refusals are re-sent
}

func newSoakCmd(e *env) *cobra.Command {
	var o soakOptions
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Run the correctness workload: many clients, a gateway SIGKILLed in a loop, forced retries, then verify",
		Long: `soak starts ` + "`coalition dev`" + ` as a subprocess on a persistent data directory with
injected transaction failures (COALITION_TEST_INJECT_FAILURE_RATE: serialization failures the
runner retries, and ambiguous commits), and runs --workers clients doing awards, redemptions,
holds, captures, voids and reversals with random keys, some sent twice at once. It SIGKILLs the
gateway --kills times at random moments and restarts it; clients resolve every unknown outcome
by re-sending the same key. After each restart and at the end it checks every ledger invariant,
then that every acknowledged operation is in the ledger exactly once, that no refused or
unacknowledged key has an effect, and that every member's posted and held points equal what the
acknowledged operations imply. It exits non-zero on any violation.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, err := runSoak(cmd.Context(), e.stdout, o)
			if err != nil {
				return err
			}
			if res.Violations > 0 {
				return fmt.Errorf("%d violations", res.Violations)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.bin, "bin", "", "coalition binary to run as the gateway (default: this executable)")
	f.StringVar(&o.dataDir, "data-dir", "", "gateway --data-dir, kept across kills (default: a temporary directory)")
	f.BoolVar(&o.keep, "keep", false, "keep --data-dir after the run")
	f.IntVar(&o.workers, "workers", 16, "concurrent clients")
	f.DurationVar(&o.duration, "duration", 30*time.Second, "how long clients start new operations")
	f.IntVar(&o.kills, "kills", 3, "times the gateway is SIGKILLed and restarted")
	f.Float64Var(&o.injectRate, "inject-rate", 0.05, "fraction of transaction attempts failed by the runner's test hook")
	f.IntVar(&o.members, "members", 100, "members the clients share (fewer means more contention)")
	f.Float64Var(&o.dupRate, "duplicate-rate", 0.1, "fraction of operations sent twice at once with the same key")
	f.DurationVar(&o.resolveFor, "resolve-timeout", 2*time.Minute, "how long an unknown outcome is re-sent before it counts as unresolved")
	f.IntVar(&o.rateLimit, "partner-rate-limit", 0,
		"the gateway's --partner-rate-limit (burst: a tenth of it): calls refused with RATE_LIMITED are re-sent with the same key (0: no limit)")
	return cmd
}

// soakResult is what a soak run counted.
type soakResult struct {
	Operations, OK, Failed     int64
	FailedByReason             map[string]int64
	Duplicates                 int64
	Kills, FailedStarts        int
	Retries                    int64 // coalition_ledger_txn_retries_total, summed over gateway lifetimes
	Unknown, Resolved          int64 // operations whose outcome was unknown at least once; of those, resolved
	RateLimited                int64 // calls refused with RATE_LIMITED, sent again after their RetryInfo delay
	UnknownByReason            map[string]int64
	VerifyRuns, ChecksPassed   int
	AckChecked, MembersChecked int
	EpochsRolled               int64 // settlement roll-up epochs summed under the traffic
	Violations                 int
	ViolationDetails           []string
}

// soakGateway is the `coalition dev` subprocess.
type soakGateway struct {
	bin, dataDir, grpcAddr, logPath string
	env                             []string
	cmd                             *exec.Cmd
	dbURL, httpAddr, certsDir       string
	boundAddr                       string // the gRPC address the gateway printed
}

var (
	soakGRPC  = regexp.MustCompile(`gRPC \(mTLS\)\s+(\S+)`)
	soakDBURL = regexp.MustCompile(`database \S+ ready \((postgres\S+)\)`)
	soakHTTP  = regexp.MustCompile(`HTTP\s+http://(\S+)/healthz`)
	soakCerts = regexp.MustCompile(`certificates\s+(\S+)`)
)

// start runs the gateway and waits until it prints its addresses; a start that fails (an
// injected ambiguous commit in a migration or while seeding, say) is tried again, at most ten
// times.
func (g *soakGateway) start(ctx context.Context) (failed int, err error) {
	for attempt := 1; ; attempt++ {
		err = g.startOnce(ctx)
		if err == nil || attempt == 10 || ctx.Err() != nil {
			return attempt - 1, err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (g *soakGateway) startOnce(ctx context.Context) error {
	// Roll-ups every 200ms: epochs are sealed and summed under the traffic, the kills and the
	// injected failures, and every verify checks the rollups against the ledger.
	cmd := exec.Command(g.bin, "dev", "--data-dir", g.dataDir, "--grpc-addr", g.grpcAddr, "--http-addr", "127.0.0.1:0", "--log-format", "text",
		"--rollup-interval", "200ms")
	cmd.Env = g.env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(g.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return err
	}
	type ready struct{ db, grpc, http, certs string }
	found, exited := make(chan ready, 1), make(chan struct{})
	go func() {
		defer close(exited)
		var r ready
		sc := bufio.NewScanner(stdout)
		for sc.Scan() { // keep reading after ready so the child never blocks on a full pipe
			line := sc.Text()
			if m := soakDBURL.FindStringSubmatch(line); m != nil {
				r.db = m[1]
			}
			if m := soakGRPC.FindStringSubmatch(line); m != nil {
				r.grpc = m[1]
			}
			if m := soakHTTP.FindStringSubmatch(line); m != nil {
				r.http = m[1]
			}
			if m := soakCerts.FindStringSubmatch(line); m != nil && r.db != "" && r.http != "" {
				r.certs = m[1]
				found <- r
			}
		}
	}()
	fail := func(why string) error {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("coalition dev %s (log: %s)", why, g.logPath)
	}
	select {
	case r := <-found:
		g.cmd, g.dbURL, g.boundAddr, g.httpAddr, g.certsDir = cmd, r.db, r.grpc, r.http, r.certs
		return nil
	case <-exited:
		return fail("exited before it was ready")
	case <-time.After(90 * time.Second):
		return fail("was not ready within 90s")
	case <-ctx.Done():
		return fail("start interrupted")
	}
}

// retries reads coalition_ledger_txn_retries_total from the gateway's /metrics.
func (g *soakGateway) retries() (int64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + g.httpAddr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "coalition_ledger_txn_retries_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err
		}
	}
	return 0, sc.Err()
}

func (g *soakGateway) kill() {
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	_ = g.cmd.Wait()
}

func (g *soakGateway) stop() error {
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(45 * time.Second):
		g.kill()
		return errors.New("coalition dev did not stop within 45s of SIGTERM; killed")
	}
}

// soakAck is an operation the gateway acknowledged (OK).
type soakAck struct {
	txnID string
}

// soakModel is what the acknowledged operations imply for each member.
type soakModel struct{ posted, held int64 }

// soak is one run's shared state.
type soak struct {
	o        soakOptions
	run      string
	clients  map[string]coalitionv1.PointsServiceClient
	deadline atomic.Pointer[time.Time]

	mu      sync.Mutex
	acked   map[string]soakAck // partner/key
	refused map[string]string  // partner/key -> reason: no effect allowed
	model   map[string]*soakModel
	res     soakResult
	violate func(format string, args ...any)
}

func runSoak(ctx context.Context, w io.Writer, o soakOptions) (*soakResult, error) {
	if o.workers < 1 || o.members < 1 || o.duration <= 0 || o.kills < 0 || o.injectRate < 0 || o.injectRate >= 1 || o.rateLimit < 0 {
		return nil, errors.New("--workers, --members and --duration must be positive, --kills and --partner-rate-limit not negative, --inject-rate in [0, 1)")
	}
	if o.resolveFor <= 0 {
		o.resolveFor = 2 * time.Minute
	}
	if o.bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		o.bin = exe
	}
	if o.dataDir == "" {
		tmp, err := os.MkdirTemp("", "coalition-soak-*")
		if err != nil {
			return nil, err
		}
		if !o.keep {
			defer os.RemoveAll(tmp)
		}
		if err := os.Chmod(tmp, 0o755); err != nil { // postgres runs unprivileged when we are root
			return nil, err
		}
		o.dataDir = filepath.Join(tmp, "data")
	}
	port, err := soakFreePort()
	if err != nil {
		return nil, err
	}
	g := &soakGateway{bin: o.bin, dataDir: o.dataDir, grpcAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		logPath: filepath.Join(filepath.Dir(o.dataDir), "soak-dev.log"),
		env:     append(os.Environ(), fmt.Sprintf("COALITION_TEST_INJECT_FAILURE_RATE=%g", o.injectRate))}
	if o.rateLimit > 0 {
		g.env = append(g.env, fmt.Sprintf("COALITION_PARTNER_RATE_LIMIT=%d", o.rateLimit),
			fmt.Sprintf("COALITION_PARTNER_RATE_BURST=%d", max(1, o.rateLimit/10)))
	}
	s := &soak{o: o, run: randomHex(3), clients: map[string]coalitionv1.PointsServiceClient{},
		acked: map[string]soakAck{}, refused: map[string]string{}, model: map[string]*soakModel{}}
	s.res.FailedByReason, s.res.UnknownByReason = map[string]int64{}, map[string]int64{}
	s.violate = func(format string, args ...any) {
		s.res.Violations++
		if len(s.res.ViolationDetails) < 50 {
			s.res.ViolationDetails = append(s.res.ViolationDetails, fmt.Sprintf(format, args...))
		}
	}
	fmt.Fprintf(w, "soak %s: %d workers for %s over %d members, %d kills, inject rate %g, duplicates %g, partner rate limit %d/s; gateway %s, data %s\n",
		s.run, o.workers, o.duration, o.members, o.kills, o.injectRate, o.dupRate, o.rateLimit, g.grpcAddr, o.dataDir)

	failed, err := g.start(ctx)
	s.res.FailedStarts += failed
	if err != nil {
		return nil, err
	}
	defer func() {
		if g.cmd != nil && g.cmd.ProcessState == nil {
			g.kill()
		}
	}()
	for _, p := range []string{"acme-air", "bean-coffee", "city-fuel"} {
		conn, err := soakDial(g.grpcAddr, g.certsDir, p)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		s.clients[p] = coalitionv1.NewPointsServiceClient(conn)
	}

	// Clients start operations until the deadline, then resolve what they have in flight.
	started := time.Now()
	deadline := started.Add(o.duration)
	s.deadline.Store(&deadline)
	var wg sync.WaitGroup
	for i := range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.worker(ctx, i)
		}()
	}

	// The killer: SIGKILL at random moments, restart, check the invariants.
	var killErr error
	interval := o.duration / time.Duration(o.kills+1)
	for k := 0; k < o.kills && ctx.Err() == nil; k++ {
		pause := time.Duration(float64(interval) * (0.5 + rand.Float64()))
		select {
		case <-time.After(pause):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		if n, err := g.retries(); err == nil {
			s.addRetries(n)
		}
		g.kill()
		s.mu.Lock()
		s.res.Kills++
		s.mu.Unlock()
		failed, err := g.start(ctx)
		s.mu.Lock()
		s.res.FailedStarts += failed
		s.mu.Unlock()
		if err != nil {
			killErr = fmt.Errorf("restart after kill %d: %w", k+1, err)
			break
		}
		s.verify(ctx, g.dbURL, fmt.Sprintf("after kill %d", k+1))
		fmt.Fprintf(w, "  %5.0fs  kill %d/%d: restarted; %s\n", time.Since(started).Seconds(), k+1, o.kills, s.progress())
		// Every kill happens while clients run: move the deadline if the restarts ate it.
		if left := o.kills - k - 1; left > 0 {
			if later := time.Now().Add(time.Duration(left) * interval); later.After(*s.deadline.Load()) {
				s.deadline.Store(&later)
			}
		}
	}
	if killErr == nil {
		s.verify(ctx, g.dbURL, "during the run")
	}
	wg.Wait()
	if killErr != nil {
		return nil, killErr
	}
	if n, err := g.retries(); err == nil {
		s.addRetries(n)
	}
	elapsed := time.Since(started)

	s.verify(ctx, g.dbURL, "at the end")
	if err := s.checkLedger(ctx, g.dbURL); err != nil {
		return nil, err
	}
	if err := g.stop(); err != nil {
		s.violate("gateway stop: %v", err)
	}
	s.print(w, elapsed)
	res := s.res
	return &res, nil
}

func (s *soak) addRetries(n int64) {
	s.mu.Lock()
	s.res.Retries += n
	s.mu.Unlock()
}

func (s *soak) progress() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("%d operations, %d unknown outcomes resolved, %d violations", s.res.Operations, s.res.Resolved, s.res.Violations)
}

// verify runs every invariant check; a check that finds a violation is a soak violation.
func (s *soak) verify(ctx context.Context, url, when string) {
	rep, err := verifyDatabase(ctx, url)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		s.violate("verify %s: %v", when, err)
		return
	}
	s.res.VerifyRuns++
	s.res.ChecksPassed += rep.passed()
	for _, v := range rep.violations {
		s.violate("invariant %s: %s: %s", when, v.Check, v.Detail)
	}
}

// soakHold is an open hold a worker authorized.
type soakHold struct {
	partner, id, member string
	points              int64
}

// soakTxn is an acknowledged transaction a worker may reverse.
type soakTxn struct {
	partner, id, member, kind string
	left                      int64 // points not yet reversed
}

// outcome is the definite result of one operation.
type outcome struct {
	ok       bool
	txnID    string
	reason   string // failure reason when !ok
	replayed bool
	holdID   string
	holdPts  int64
	unknowns int
}

// worker runs operations until the deadline. Its holds and reversible transactions are its
// own; members are shared by all workers.
func (s *soak) worker(ctx context.Context, id int) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(id)))
	var holds []soakHold
	var txns []soakTxn
	seq := 0
	partners := []string{"acme-air", "bean-coffee", "city-fuel"}
	for ctx.Err() == nil && time.Now().Before(*s.deadline.Load()) {
		seq++
		key := fmt.Sprintf("soak-%s-%d-%d", s.run, id, seq)
		partner := partners[rng.IntN(len(partners))]
		member := fmt.Sprintf("S%s-%d", s.run, rng.IntN(s.o.members))
		var op soakOp
		switch n := rng.IntN(100); {
		case n < 35:
			pts := int64(10 + rng.IntN(190))
			op = soakOp{kind: "award", partner: partner, member: member, points: pts, send: func(ctx context.Context, c coalitionv1.PointsServiceClient) (outcome, error) {
				r, err := c.Award(ctx, &coalitionv1.AwardRequest{IdempotencyKey: key, MemberId: member, Points: pts, Reference: key})
				return outcome{txnID: r.GetTransaction().GetId(), replayed: r.GetReplayed()}, err
			}}
		case n < 50:
			pts := int64(1 + rng.IntN(60))
			op = soakOp{kind: "redeem", partner: partner, member: member, points: pts, send: func(ctx context.Context, c coalitionv1.PointsServiceClient) (outcome, error) {
				r, err := c.Redeem(ctx, &coalitionv1.RedeemRequest{IdempotencyKey: key, MemberId: member, Points: pts, Reference: key})
				return outcome{txnID: r.GetTransaction().GetId(), replayed: r.GetReplayed()}, err
			}}
		case n < 65:
			pts := int64(1 + rng.IntN(60))
			op = soakOp{kind: "authorize", partner: partner, member: member, points: pts, send: func(ctx context.Context, c coalitionv1.PointsServiceClient) (outcome, error) {
				r, err := c.AuthorizeRedemption(ctx, &coalitionv1.AuthorizeRedemptionRequest{IdempotencyKey: key, MemberId: member, Points: pts,
					Reference: key, HoldTtl: durationpb.New(24 * time.Hour)})
				return outcome{txnID: r.GetTransaction().GetId(), replayed: r.GetReplayed(), holdID: r.GetHold().GetId(), holdPts: r.GetHold().GetPoints()}, err
			}}
		case n < 77 && len(holds) > 0:
			i := rng.IntN(len(holds))
			h := holds[i]
			pts := h.points
			if rng.IntN(2) == 0 {
				pts = 1 + rng.Int64N(h.points)
			}
			op = soakOp{kind: "capture", partner: h.partner, member: h.member, points: pts, hold: &h, holdIdx: i, send: func(ctx context.Context, c coalitionv1.PointsServiceClient) (outcome, error) {
				r, err := c.CaptureRedemption(ctx, &coalitionv1.CaptureRedemptionRequest{IdempotencyKey: key, HoldId: h.id, Points: pts})
				return outcome{txnID: r.GetTransaction().GetId(), replayed: r.GetReplayed()}, err
			}}
		case n < 85 && len(holds) > 0:
			i := rng.IntN(len(holds))
			h := holds[i]
			op = soakOp{kind: "void", partner: h.partner, member: h.member, points: h.points, hold: &h, holdIdx: i, send: func(ctx context.Context, c coalitionv1.PointsServiceClient) (outcome, error) {
				r, err := c.VoidRedemption(ctx, &coalitionv1.VoidRedemptionRequest{IdempotencyKey: key, HoldId: h.id})
				return outcome{txnID: r.GetTransaction().GetId(), replayed: r.GetReplayed()}, err
			}}
		case n < 100 && len(txns) > 0:
			i := rng.IntN(len(txns))
			t := txns[i]
			pts := t.left
			if rng.IntN(2) == 0 {
				pts = 1 + rng.Int64N(t.left)
			}
			op = soakOp{kind: "reverse", partner: t.partner, member: t.member, points: pts, target: &t, txnIdx: i, send: func(ctx context.Context, c coalitionv1.PointsServiceClient) (outcome, error) {
				r, err := c.Reverse(ctx, &coalitionv1.ReverseRequest{IdempotencyKey: key, TransactionId: t.id, Points: pts, Reason: "soak"})
				return outcome{txnID: r.GetTransaction().GetId(), replayed: r.GetReplayed()}, err
			}}
		default:
			continue
		}
		out, ok := s.do(ctx, rng, key, op)
		if !ok || !out.ok {
			continue
		}
		switch op.kind {
		case "award", "redeem":
			txns = append(txns, soakTxn{partner: op.partner, id: out.txnID, member: op.member, kind: op.kind, left: op.points})
		case "authorize":
			holds = append(holds, soakHold{partner: op.partner, id: out.holdID, member: op.member, points: op.points})
		case "capture", "void":
			holds[op.holdIdx] = holds[len(holds)-1]
			holds = holds[:len(holds)-1]
			if op.kind == "capture" {
				txns = append(txns, soakTxn{partner: op.partner, id: out.txnID, member: op.member, kind: "capture", left: op.points})
			}
		case "reverse":
			txns[op.txnIdx].left -= op.points
			if txns[op.txnIdx].left == 0 {
				txns[op.txnIdx] = txns[len(txns)-1]
				txns = txns[:len(txns)-1]
			}
		}
	}
}

// soakOp is one operation: its effect on the member model and how to send it.
type soakOp struct {
	kind, partner, member string
	points                int64
	hold                  *soakHold // capture, void
	holdIdx               int
	target                *soakTxn // reverse
	txnIdx                int
	send                  func(ctx context.Context, c coalitionv1.PointsServiceClient) (outcome, error)
}

// do sends op until its outcome is definite (re-sending the same key after every unknown
// outcome), sometimes from two callers at once, and records the outcome. ok is false when the
// outcome stayed unknown (a violation) or the run was interrupted.
func (s *soak) do(ctx context.Context, rng *rand.Rand, key string, op soakOp) (outcome, bool) {
	dup := rng.Float64() < s.o.dupRate
	var second outcome
	var secondOK bool
	var wg sync.WaitGroup
	if dup {
		wg.Add(1)
		go func() {
			defer wg.Done()
			second, secondOK = s.resolve(ctx, op)
		}()
	}
	out, ok := s.resolve(ctx, op)
	wg.Wait()
	if ctx.Err() != nil {
		return out, false
	}
	id := op.partner + "/" + key
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res.Operations++
	if out.unknowns > 0 || second.unknowns > 0 {
		s.res.Unknown++
		if ok && (!dup || secondOK) {
			s.res.Resolved++
		}
	}
	if !ok || (dup && !secondOK) {
		s.violate("%s %s: outcome still unknown after %s", op.kind, id, s.o.resolveFor)
		return out, false
	}
	if dup {
		s.res.Duplicates++
		if out.ok != second.ok || out.txnID != second.txnID || out.reason != second.reason {
			s.violate("%s %s sent twice at once: outcomes differ: %+v and %+v", op.kind, id, out, second)
		}
	}
	if !out.ok {
		s.res.Failed++
		s.res.FailedByReason[op.kind+" "+out.reason]++
		s.refused[id] = out.reason
		return out, true
	}
	s.res.OK++
	s.acked[id] = soakAck{txnID: out.txnID}
	m := s.model[op.member]
	if m == nil {
		m = &soakModel{}
		s.model[op.member] = m
	}
	switch op.kind {
	case "award":
		m.posted += op.points
	case "redeem":
		m.posted -= op.points
	case "authorize":
		m.held += op.points
	case "capture":
		m.posted -= op.points
		m.held -= op.hold.points
	case "void":
		m.held -= op.hold.points
	case "reverse":
		if op.target.kind == "award" {
			m.posted -= op.points
		} else {
			m.posted += op.points
		}
	}
	return out, true
}

// resolve sends op until the answer is definite: OK or a business refusal. UNAVAILABLE
// (ambiguous commit, the gateway down), ABORTED (conflict, key in flight), DEADLINE_EXCEEDED,
// INTERNAL and the like are unknown outcomes: the same key is sent again after a backoff. A
// call refused by the partner rate limit was not applied: it is sent again after its RetryInfo
// delay, as a partner should, and counted apart.
func (s *soak) resolve(ctx context.Context, op soakOp) (outcome, bool) {
	start := time.Now()
	unknowns := 0
	backoff := 20 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		out, err := op.send(cctx, s.clients[op.partner])
		cancel()
		out.unknowns = unknowns
		switch status.Code(err) {
		case codes.OK:
			out.ok = true
			return out, true
		case codes.FailedPrecondition, codes.NotFound, codes.InvalidArgument, codes.PermissionDenied, codes.AlreadyExists, codes.OutOfRange:
			out.reason = status.Code(err).String() + " " + gateway.ReasonOf(err)
			return out, true
		}
		if ctx.Err() != nil || time.Since(start) > s.o.resolveFor {
			return out, false
		}
		if status.Code(err) == codes.ResourceExhausted && gateway.ReasonOf(err) == gateway.ReasonRateLimited {
			s.mu.Lock()
			s.res.RateLimited++
			s.mu.Unlock()
			select {
			case <-time.After(cmp.Or(gateway.RetryDelayOf(err), backoff)):
			case <-ctx.Done():
			}
			continue
		}
		unknowns++
		reason := status.Code(err).String()
		if r := gateway.ReasonOf(err); r != "" {
			reason += " " + r
		}
		s.mu.Lock()
		s.res.UnknownByReason[reason]++
		s.mu.Unlock()
		select {
		case <-time.After(backoff/2 + rand.N(backoff/2)):
		case <-ctx.Done():
		}
		backoff = min(backoff*2, time.Second)
	}
}

// checkLedger compares the database with what the clients were told.
func (s *soak) checkLedger(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT partner_id || '/' || idempotency_key, id::TEXT FROM transactions WHERE idempotency_key LIKE $1`,
		"soak-"+s.run+"-%")
	if err != nil {
		return fmt.Errorf("read transactions: %w", err)
	}
	found := map[string][]string{}
	for rows.Next() {
		var k, id string
		if err := rows.Scan(&k, &id); err != nil {
			return err
		}
		found[k] = append(found[k], id)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read transactions: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, a := range s.acked {
		ids := found[k]
		switch {
		case len(ids) == 0:
			s.violate("acknowledged %s (transaction %s) is not in the ledger", k, a.txnID)
		case len(ids) > 1:
			s.violate("acknowledged %s has %d transactions", k, len(ids))
		case ids[0] != a.txnID:
			s.violate("acknowledged %s as transaction %s, ledger has %s", k, a.txnID, ids[0])
		default:
			s.res.AckChecked++
		}
	}
	for k, ids := range found {
		if _, ok := s.acked[k]; ok {
			continue
		}
		if reason, ok := s.refused[k]; ok {
			s.violate("refused %s (%s) has an effect: %v", k, reason, ids)
		} else {
			s.violate("%s was never acknowledged but has an effect: %v", k, ids)
		}
	}
	mrows, err := conn.Query(ctx, `SELECT id, posted, held FROM members WHERE id LIKE $1`, "S"+s.run+"-%")
	if err != nil {
		return fmt.Errorf("read members: %w", err)
	}
	seen := map[string]bool{}
	for mrows.Next() {
		var id string
		var posted, held int64
		if err := mrows.Scan(&id, &posted, &held); err != nil {
			return err
		}
		seen[id] = true
		want := s.model[id]
		if want == nil {
			want = &soakModel{}
		}
		if posted != want.posted || held != want.held {
			s.violate("member %s: posted %d held %d, the acknowledged operations imply %d and %d", id, posted, held, want.posted, want.held)
			continue
		}
		s.res.MembersChecked++
	}
	if err := mrows.Err(); err != nil {
		return fmt.Errorf("read members: %w", err)
	}
	for id, m := range s.model {
		if !seen[id] && (m.posted != 0 || m.held != 0) {
			s.violate("member %s is missing; the acknowledged operations imply posted %d held %d", id, m.posted, m.held)
		}
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM rollup_epochs`).Scan(&s.res.EpochsRolled); err != nil {
		return fmt.Errorf("count rolled-up epochs: %w", err)
	}
	return nil
}

func (s *soak) print(w io.Writer, elapsed time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.res
	fmt.Fprintf(w, "\nsoak %s finished in %s\n", s.run, elapsed.Round(time.Second))
	fmt.Fprintf(w, "  operations                 %d (%d ok, %d refused), %.0f/s\n", r.Operations, r.OK, r.Failed, float64(r.Operations)/elapsed.Seconds())
	printCounts(w, "    refused", r.FailedByReason)
	fmt.Fprintf(w, "  sent twice at once         %d (every pair agreed unless listed below)\n", r.Duplicates)
	fmt.Fprintf(w, "  kills (SIGKILL + restart)  %d (%d restarts needed a second try)\n", r.Kills, r.FailedStarts)
	fmt.Fprintf(w, "  transaction retries        %d (coalition_ledger_txn_retries_total over all gateway lives; inject rate %g)\n", r.Retries, s.o.injectRate)
	fmt.Fprintf(w, "  unknown outcomes resolved  %d of %d operations with an unknown outcome\n", r.Resolved, r.Unknown)
	printCounts(w, "    unknown answers", r.UnknownByReason)
	if s.o.rateLimit > 0 {
		fmt.Fprintf(w, "  rate-limited, re-sent      %d calls refused with RATE_LIMITED (%d/s per partner), sent again after their RetryInfo delay\n", r.RateLimited, s.o.rateLimit)
	}
	fmt.Fprintf(w, "  invariant checks passed    %d (%d verify runs)\n", r.ChecksPassed, r.VerifyRuns)
	fmt.Fprintf(w, "  acknowledged exactly once  %d of %d\n", r.AckChecked, len(s.acked))
	fmt.Fprintf(w, "  members matching the model %d\n", r.MembersChecked)
	fmt.Fprintf(w, "  epochs rolled up           %d (sealed and summed every 200ms; each verify compared the rollups with the ledger)\n", r.EpochsRolled)
	fmt.Fprintf(w, "  violations                 %d\n", r.Violations)
	for _, d := range r.ViolationDetails {
		fmt.Fprintf(w, "    %s\n", d)
	}
}

func printCounts(w io.Writer, label string, m map[string]int64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "%s %-40s %d\n", label, k, m[k])
	}
}

// soakDial is dialPartner with a reconnect backoff capped at 500ms: gRPC's default grows to
// 2 minutes while the gateway is down, and with a kill every few seconds clients would wait out
// whole restarts.
func soakDial(addr, certsDir, id string) (*grpc.ClientConn, error) {
	return dialPartner(addr, certsDir, id, grpc.WithConnectParams(grpc.ConnectParams{MinConnectTimeout: 5 * time.Second,
		Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond}}))
}

func soakFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
