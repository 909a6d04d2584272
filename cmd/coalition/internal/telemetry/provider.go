package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Environment variables read by NewProvider (the OpenTelemetry SDK's standard names).
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvServiceName    = "OTEL_SERVICE_NAME"
	EnvResourceAttrs  = "OTEL_RESOURCE_ATTRIBUTES"
)

// Config configures NewProvider.
type Config struct {
	// Getenv reads the OTEL_* variables above; required.
	Getenv func(string) string
	// ServiceName is used when OTEL_SERVICE_NAME is unset; default "coalition".
	ServiceName string
	// Version is the service.version resource attribute; empty for none.
	Version string
	// Exporter replaces the OTLP exporter, for tests; the endpoint need not be set then.
	Exporter sdktrace.SpanExporter
}

// Provider is a tracer provider and the function that flushes and stops it.
type Provider struct {
	trace.TracerProvider
	// Enabled reports whether spans are exported anywhere.
	Enabled  bool
	shutdown func(context.Context) error
}

// Shutdown flushes buffered spans and stops the exporter; ctx bounds the flush.
func (p *Provider) Shutdown(ctx context.Context) error { return p.shutdown(ctx) }

// NewProvider returns a provider exporting over OTLP/gRPC to the endpoint in the environment,
// with every span sampled unless the caller's trace context says otherwise (parent-based), or a
// no-op provider when no endpoint is configured. The endpoint is a URL: http:// means plaintext
// (a collector beside the pod), https:// means TLS.
func NewProvider(ctx context.Context, cfg Config) (*Provider, error) {
	if cfg.Getenv == nil {
		return nil, errors.New("telemetry: Config.Getenv is required")
	}
	endpoint := cfg.Getenv(EnvTracesEndpoint)
	if endpoint == "" {
		endpoint = cfg.Getenv(EnvEndpoint)
	}
	exporter := cfg.Exporter
	if exporter == nil && endpoint == "" {
		return &Provider{TracerProvider: noop.NewTracerProvider(), shutdown: func(context.Context) error { return nil }}, nil
	}
	if exporter == nil {
		exp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(endpoint), otlptracegrpc.WithTimeout(10*time.Second))
		if err != nil {
			return nil, fmt.Errorf("telemetry: otlp exporter for %s: %w", endpoint, err)
		}
		exporter = exp
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exporter),
		sdktrace.WithResource(newResource(cfg)),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	)
	return &Provider{TracerProvider: tp, Enabled: true, shutdown: tp.Shutdown}, nil
}

// newResource describes this process: service name and version, plus OTEL_RESOURCE_ATTRIBUTES
// (k=v pairs separated by commas; the Kubernetes manifests put the pod name there).
func newResource(cfg Config) *resource.Resource {
	name := cfg.Getenv(EnvServiceName)
	if name == "" {
		name = cfg.ServiceName
	}
	if name == "" {
		name = "coalition"
	}
	attrs := []attribute.KeyValue{attribute.String("service.name", name)}
	if cfg.Version != "" {
		attrs = append(attrs, attribute.String("service.version", cfg.Version))
	}
	for _, pair := range strings.Split(cfg.Getenv(EnvResourceAttrs), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if ok && k != "" && k != "service.name" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	return resource.NewSchemaless(attrs...)
}
