package gateway

import (
	"context"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc/stats"
)

// partnerAttribute names the calling partner on a request's span.
const partnerAttribute = attribute.Key("coalition.partner_id")

// statsHandler returns the OpenTelemetry stats handler of the gRPC server: one server span per
// RPC, continuing the caller's W3C trace context when it sends one. Health checks are not traced
// (probes would drown the traces that matter). Its metrics are off: Prometheus collectors in
// metrics.go already count RPCs by method, code and partner. A nil tp means no tracing.
func statsHandler(tp trace.TracerProvider) stats.Handler {
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithPropagators(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		otelgrpc.WithFilter(filters.Not(filters.HealthCheck())),
	)
}

// traceLogAttrs tags the request's span with the calling partner and returns the attributes
// that tie the request's log line to its trace. It returns none when the request has no
// valid trace (no tracer provider and no trace context from the caller).
func traceLogAttrs(ctx context.Context, partner string) []any {
	span := trace.SpanFromContext(ctx)
	if partner != "" {
		span.SetAttributes(partnerAttribute.String(partner))
	}
	sc := span.SpanContext()
	if !sc.IsValid() {
		return nil
	}
	return []any{"trace_id", sc.TraceID().String(), "span_id", sc.SpanID().String()}
}
