package partnersim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	partnerv1 "github.com/coalitionexchange/coalition/proto/coalition/partner/v1"
)

// RejectPrefix: CreditExchange refuses members whose id starts with it (FAILED_PRECONDITION),
// the simulated "no such account in our program".
const RejectPrefix = "NOACCT"

// Config configures a Sim. Rates are probabilities in [0, 1].
type Config struct {
	PartnerID string // required
	FailRate  float64
	HangRate  float64
	Latency   time.Duration
	Logger    *slog.Logger // default slog.Default()
}

// Event is an event the sim applied, in the order it applied them.
type Event struct {
	ID, Type, MemberID string
	Points             int64
}

type credit struct {
	id       string
	memberID string
	units    int64
}

// Sim is the simulated partner. Its behaviour can change while it serves.
type Sim struct {
	partnerv1.UnimplementedPartnerProgramServiceServer
	id  string
	log *slog.Logger

	failRate, hangRate atomic.Uint64 // float64 bits
	latency            atomic.Int64
	calls              atomic.Int64

	mu        sync.Mutex
	credits   map[string]credit // by idempotency key
	events    map[string]int    // applied count by event id (never above 1)
	applied   []Event
	redeliver int
}

// New returns a Sim.
func New(cfg Config) (*Sim, error) {
	if cfg.PartnerID == "" {
		return nil, fmt.Errorf("partnersim: Config.PartnerID is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Sim{id: cfg.PartnerID, log: cfg.Logger, credits: map[string]credit{}, events: map[string]int{}}
	s.SetFailRate(cfg.FailRate)
	s.SetHangRate(cfg.HangRate)
	s.SetLatency(cfg.Latency)
	return s, nil
}

// SetFailRate makes that share of calls fail with UNAVAILABLE before applying anything.
func (s *Sim) SetFailRate(f float64) { s.failRate.Store(floatBits(f)) }

// SetHangRate makes that share of calls apply their effect, then never answer (until the
// caller gives up): the caller cannot know the outcome.
func (s *Sim) SetHangRate(f float64) { s.hangRate.Store(floatBits(f)) }

// SetLatency delays every answer.
func (s *Sim) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// Calls returns how many calls reached the sim.
func (s *Sim) Calls() int64 { return s.calls.Load() }

// NewServer returns a gRPC server for s with the given server TLS config (mTLS: it should
// require and verify client certificates).
func (s *Sim) NewServer(tlsCfg *tls.Config) *grpc.Server {
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsCfg)))
	partnerv1.RegisterPartnerProgramServiceServer(gs, s)
	return gs
}

// behave applies the configured failure and latency before a call's effect; hang reports
// whether the caller must get no answer after it.
func (s *Sim) behave(ctx context.Context) (hang bool, err error) {
	s.calls.Add(1)
	if rand.Float64() < floatOf(s.failRate.Load()) {
		return false, status.Error(codes.Unavailable, "partner-sim: simulated outage")
	}
	if d := time.Duration(s.latency.Load()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false, status.FromContextError(ctx.Err()).Err()
		case <-t.C:
		}
	}
	return rand.Float64() < floatOf(s.hangRate.Load()), nil
}

// CreditExchange implements partnerv1.PartnerProgramServiceServer.
func (s *Sim) CreditExchange(ctx context.Context, req *partnerv1.CreditExchangeRequest) (*partnerv1.CreditExchangeResponse, error) {
	hang, err := s.behave(ctx)
	if err != nil {
		return nil, err
	}
	if req.GetIdempotencyKey() == "" || req.GetUnits() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "partner-sim: idempotency_key and positive units are required")
	}
	if strings.HasPrefix(req.GetMemberId(), RejectPrefix) {
		return nil, status.Errorf(codes.FailedPrecondition, "partner-sim: member %s has no account at %s", req.GetMemberId(), s.id)
	}
	s.mu.Lock()
	c, replayed := s.credits[req.GetIdempotencyKey()]
	if !replayed {
		c = credit{id: fmt.Sprintf("%s-credit-%d", s.id, len(s.credits)+1), memberID: req.GetMemberId(), units: req.GetUnits()}
		s.credits[req.GetIdempotencyKey()] = c
	}
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &partnerv1.CreditExchangeResponse{CreditId: c.id, Replayed: replayed}, nil
}

// DeliverEvents implements partnerv1.PartnerProgramServiceServer.
func (s *Sim) DeliverEvents(ctx context.Context, req *partnerv1.DeliverEventsRequest) (*partnerv1.DeliverEventsResponse, error) {
	hang, err := s.behave(ctx)
	if err != nil {
		return nil, err
	}
	resp := &partnerv1.DeliverEventsResponse{}
	s.mu.Lock()
	for _, e := range req.GetEvents() {
		switch {
		case e.GetId() == "" || e.GetType() == "":
			resp.Results = append(resp.Results, partnerv1.EventResult_EVENT_RESULT_REJECTED)
		case s.events[e.GetId()] > 0:
			s.redeliver++
			resp.Results = append(resp.Results, partnerv1.EventResult_EVENT_RESULT_DUPLICATE)
		default:
			s.events[e.GetId()]++
			s.applied = append(s.applied, Event{ID: e.GetId(), Type: e.GetType(), MemberID: e.GetMemberId(), Points: e.GetPoints()})
			resp.Results = append(resp.Results, partnerv1.EventResult_EVENT_RESULT_APPLIED)
		}
	}
	s.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return resp, nil
}

// Applied returns the events applied so far, in order.
func (s *Sim) Applied() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.applied...)
}

// Redeliveries returns how many deliveries of an already applied event were refused as duplicates.
func (s *Sim) Redeliveries() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.redeliver
}

// CreditedUnits returns the units credited to memberID, each idempotency key counted once.
func (s *Sim) CreditedUnits(memberID string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var total int64
	for _, c := range s.credits {
		if c.memberID == memberID {
			total += c.units
		}
	}
	return total
}

// Summary is one line about what the sim did, for its command's output.
func (s *Sim) Summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("partner-sim %s: %d calls, %d credits, %d events applied, %d redeliveries refused",
		s.id, s.calls.Load(), len(s.credits), len(s.applied), s.redeliver)
}

func floatBits(f float64) uint64 { return math.Float64bits(f) }
func floatOf(b uint64) float64   { return math.Float64frombits(b) }

// ServerTLS returns an mTLS server config for a sim: a certificate from ca for localhost,
// 127.0.0.1 and ::1, and client certificates required and verified against ca.
func ServerTLS(ca *devca.CA, now time.Time) (*tls.Config, error) {
	cert, err := ca.IssueServer([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, now, 30*24*time.Hour)
	if err != nil {
		return nil, err
	}
	return tlsconfig.Server(staticCerts{cert: &cert, pool: ca.Pool()}), nil
}

// staticCerts is a tlsconfig.CertSource that never rotates.
type staticCerts struct {
	cert *tls.Certificate
	pool *x509.CertPool
}

func (s staticCerts) ServerCertificate() (*tls.Certificate, error) { return s.cert, nil }
func (s staticCerts) ClientCAs() (*x509.CertPool, error)           { return s.pool, nil }
