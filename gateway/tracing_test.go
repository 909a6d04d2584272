package gateway_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"

	"github.com/coalitionexchange/coalition/gateway"
	"github.com/coalitionexchange/coalition/gateway/devca"
	"github.com/coalitionexchange/coalition/gateway/gatewaytest"
	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	coalitionv1 "github.com/coalitionexchange/coalition/proto/coalition/v1"
	"github.com/coalitionexchange/coalition/settlement"
)

// staticLedger answers every balance with zero; tracing needs no database.
type staticLedger struct{}

func (staticLedger) Apply(context.Context, settlement.Command) (settlement.Outcome, error) {
	return settlement.Outcome{}, nil
}
func (staticLedger) Balance(_ context.Context, memberID string) (settlement.Balance, error) {
	return settlement.Balance{MemberID: memberID}, nil
}
func (staticLedger) ListTransactions(context.Context, string, string, int, *settlement.Page) ([]settlement.Transaction, *settlement.Page, error) {
	return nil, nil, nil
}

// activePartners knows every partner, all active.
type activePartners struct{}

func (activePartners) Partner(_ context.Context, id string) (settlement.Partner, error) {
	return settlement.Partner{ID: id, Name: id, Status: settlement.PartnerActive}, nil
}

// syncBuffer is a bytes.Buffer safe for the server's concurrent log writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tracedGateway serves a gateway traced into an in-memory exporter and logging JSON into logs.
type tracedGateway struct {
	spans   *tracetest.InMemoryExporter
	logs    *syncBuffer
	client  coalitionv1.PointsServiceClient
	httpURL string
	certTTL time.Duration
	metrics *gateway.Metrics
}

func startTracedGateway(t *testing.T) *tracedGateway {
	t.Helper()
	g := &tracedGateway{spans: tracetest.NewInMemoryExporter(), logs: &syncBuffer{}, certTTL: time.Hour}
	ca, err := devca.New("tracing test CA", time.Now(), 2*g.certTTL)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := ca.IssueServer([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Now(), g.certTTL)
	if err != nil {
		t.Fatal(err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(g.spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	srv, err := gateway.New(gateway.Config{
		Ledger: staticLedger{}, Partners: activePartners{}, Certs: &gatewaytest.StaticCerts{Cert: &serverCert, Pool: ca.Pool()},
		TracerProvider: tp, Logger: slog.New(slog.NewJSONHandler(g.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	g.metrics = srv.Metrics
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	httpSrv := httptest.NewServer(srv.HTTPHandler())
	g.httpURL = httpSrv.URL
	t.Cleanup(func() {
		httpSrv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	clientCert, err := ca.IssueClient(string(tlsconfig.RolePartner), gatewaytest.AcmeAir, time.Now(), g.certTTL)
	if err != nil {
		t.Fatal(err)
	}
	creds := credentials.NewTLS(tlsconfig.Client(clientCert, ca.Pool(), "localhost"))
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	g.client = coalitionv1.NewPointsServiceClient(conn)
	return g
}

func TestRequestSpanContinuesCallerTraceAndIsLogged(t *testing.T) {
	g := startTracedGateway(t)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if _, err := g.client.GetBalance(ctx, &coalitionv1.GetBalanceRequest{MemberId: "m-1"}); err != nil {
		t.Fatalf("GetBalance: %v", err)
	}

	// The server ends its span when the stats handler sees the RPC end, which can come just
	// after the client has its answer: wait for it, with a bound.
	spans := g.spans.GetSpans()
	for deadline := time.Now().Add(5 * time.Second); len(spans) == 0 && time.Now().Before(deadline); spans = g.spans.GetSpans() {
		time.Sleep(5 * time.Millisecond)
	}
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1: %v", len(spans), spans)
	}
	span := spans[0]
	if got, want := span.Name, "coalition.v1.PointsService/GetBalance"; got != want {
		t.Errorf("span name: got %q, want %q", got, want)
	}
	if got := span.SpanContext.TraceID().String(); got != traceID {
		t.Errorf("span trace id: got %s, want the caller's %s", got, traceID)
	}
	var partner string
	for _, a := range span.Attributes {
		if a.Key == "coalition.partner_id" {
			partner = a.Value.AsString()
		}
	}
	if partner != gatewaytest.AcmeAir {
		t.Errorf("span coalition.partner_id: got %q, want %q", partner, gatewaytest.AcmeAir)
	}

	line := rpcLogLine(t, g.logs.String())
	for key, want := range map[string]string{"trace_id": traceID, "span_id": span.SpanContext.SpanID().String(), "partner": gatewaytest.AcmeAir, "method": "GetBalance"} {
		if got, _ := line[key].(string); got != want {
			t.Errorf("log line %s: got %q, want %q (line %v)", key, got, want, line)
		}
	}
}

// rpcLogLine returns the one "rpc" log line in logs.
func rpcLogLine(t *testing.T, logs string) map[string]any {
	t.Helper()
	var found []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", l, err)
		}
		if m["msg"] == "rpc" {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("got %d rpc log lines, want 1:\n%s", len(found), logs)
	}
	return found[0]
}

func TestMetricsExposeServerCertificateExpiry(t *testing.T) {
	g := startTracedGateway(t)
	if _, err := g.client.GetBalance(context.Background(), &coalitionv1.GetBalanceRequest{MemberId: "m-1"}); err != nil {
		t.Fatalf("GetBalance: %v", err)
	}
	body := scrape(t, g.httpURL)
	v := sampleValue(t, body, `coalition_certificate_expiry_seconds{certificate="server"}`)
	if v <= 0 || v > g.certTTL.Seconds() {
		t.Errorf("server certificate expiry: got %.0fs, want within (0, %.0f]", v, g.certTTL.Seconds())
	}
	for _, name := range []string{"coalition_grpc_requests_total", "coalition_grpc_request_duration_seconds", "coalition_ledger_txn_retries_total"} {
		if !strings.Contains(body, "# TYPE "+name+" ") {
			t.Errorf("/metrics has no %s", name)
		}
	}
}

func TestObservedCertificateWinsOverSource(t *testing.T) {
	g := startTracedGateway(t)
	notAfter := time.Now().Add(10 * time.Minute)
	g.metrics.ObserveCertificate(gateway.CertificateServer, &x509.Certificate{NotAfter: notAfter})
	g.metrics.ObserveCertificate("partner-client", &x509.Certificate{NotAfter: notAfter.Add(time.Hour)})
	body := scrape(t, g.httpURL)
	if v := sampleValue(t, body, `coalition_certificate_expiry_seconds{certificate="server"}`); v <= 0 || v > 600 {
		t.Errorf("observed server certificate expiry: got %.0fs, want within (0, 600]", v)
	}
	if v := sampleValue(t, body, `coalition_certificate_expiry_seconds{certificate="partner-client"}`); v <= 3600 || v > 4200 {
		t.Errorf("partner-client certificate expiry: got %.0fs, want within (3600, 4200]", v)
	}
	g.metrics.ObserveCertificate("partner-client", nil)
	if body := scrape(t, g.httpURL); strings.Contains(body, `certificate="partner-client"`) {
		t.Errorf("forgotten certificate still exposed")
	}
}

func scrape(t *testing.T, baseURL string) string {
	t.Helper()
	resp, err := http.Get(baseURL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: status %d, err %v", resp.StatusCode, err)
	}
	return string(body)
}

// sampleValue returns the value of the sample whose name and labels are series.
func sampleValue(t *testing.T, body, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("sample %q: %v", l, err)
			}
			return v
		}
	}
	t.Fatalf("/metrics has no sample %s:\n%s", series, body)
	return 0
}
