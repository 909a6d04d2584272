package telemetry_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/telemetry"
	"github.com/coalitionexchange/coalition/settlement/sqlstore/sqlstoretest"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestProviderIsNoopWithoutEndpoint(t *testing.T) {
	p, err := telemetry.NewProvider(context.Background(), telemetry.Config{Getenv: envOf(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if p.Enabled {
		t.Errorf("Enabled: got true, want false without %s", telemetry.EnvEndpoint)
	}
	_, span := p.Tracer("t").Start(context.Background(), "s")
	if span.SpanContext().IsValid() {
		t.Errorf("no-op provider made a valid span")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
}

func TestProviderWithEndpointBuildsOTLPExporter(t *testing.T) {
	// The exporter connects lazily: building it needs no collector.
	p, err := telemetry.NewProvider(context.Background(), telemetry.Config{Getenv: envOf(map[string]string{
		telemetry.EnvEndpoint: "http://127.0.0.1:1",
	})})
	if err != nil {
		t.Fatal(err)
	}
	if !p.Enabled {
		t.Errorf("Enabled: got false, want true with %s set", telemetry.EnvEndpoint)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = p.Shutdown(ctx) // nothing listens; only the bound matters
}

func TestProviderExportsWithResource(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	p, err := telemetry.NewProvider(context.Background(), telemetry.Config{
		Getenv:   envOf(map[string]string{telemetry.EnvResourceAttrs: "k8s.pod.name=gw-1, deployment.environment=prod"}),
		Exporter: exp, ServiceName: "coalition-gateway", Version: "v1.2.3",
	})
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.Tracer("t").Start(context.Background(), "s")
	span.End()
	// Flush, not Shutdown: the in-memory exporter forgets its spans when shut down.
	if err := p.TracerProvider.(*sdktrace.TracerProvider).ForceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Shutdown(context.Background()) }()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("got %d spans, want 1", len(spans))
	}
	got := map[string]string{}
	for _, a := range spans[0].Resource.Attributes() {
		got[string(a.Key)] = a.Value.Emit()
	}
	want := map[string]string{"service.name": "coalition-gateway", "service.version": "v1.2.3", "k8s.pod.name": "gw-1", "deployment.environment": "prod"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("resource %s: got %q, want %q", k, got[k], v)
		}
	}
}

func TestPgxTracerSpansQueriesAndBatches(t *testing.T) {
	url := sqlstoretest.NewDatabase(t)
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = telemetry.NewPgxTracer(tp, "postgresql")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	parent, rpc := tp.Tracer("test").Start(ctx, "rpc")
	var one int
	if err := pool.QueryRow(parent, "SELECT $1::INT8", 41).Scan(&one); err != nil {
		t.Fatal(err)
	}
	b := &pgx.Batch{}
	b.Queue("SELECT 1")
	b.Queue("SELECT 2")
	if err := pool.SendBatch(parent, b).Close(); err != nil {
		t.Fatal(err)
	}
	_, _ = pool.Exec(parent, "SELEC broken")
	rpc.End()

	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range exp.GetSpans().Snapshots() {
		byName[s.Name()] = s
	}
	sel, batch, broken := byName["db SELECT"], byName["BATCH"], byName["db SELEC"]
	if sel == nil || batch == nil || broken == nil {
		t.Fatalf("got spans %v, want db SELECT, BATCH and db SELEC", keys(byName))
	}
	for _, s := range []sdktrace.ReadOnlySpan{sel, batch, broken} {
		if s.Parent().SpanID() != rpc.SpanContext().SpanID() {
			t.Errorf("span %s: parent %s, want the rpc span %s", s.Name(), s.Parent().SpanID(), rpc.SpanContext().SpanID())
		}
	}
	for _, a := range sel.Attributes() {
		if a.Key == "db.query.text" && strings.Contains(a.Value.Emit(), "41") {
			t.Errorf("statement attribute carries an argument: %q", a.Value.Emit())
		}
	}
	if got := len(batch.Events()); got != 2 {
		t.Errorf("batch events: got %d, want 2 (one per statement)", got)
	}
	if broken.Status().Code != codes.Error {
		t.Errorf("failed statement status: got %v, want Error", broken.Status().Code)
	}
}

func keys(m map[string]sdktrace.ReadOnlySpan) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
