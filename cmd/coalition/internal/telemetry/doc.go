// Package telemetry sets up OpenTelemetry tracing for the coalition binary: a tracer provider
// that exports spans over OTLP/gRPC when OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set and does nothing otherwise, and a pgx tracer that
// gives every SQL statement and batch a span under the request that ran it.
//
// It owns no global state: the provider is passed to whoever traces (the gateway's stats
// handler, the pgx pool), never installed with otel.SetTracerProvider. It must not log or record
// query arguments: they carry member ids and amounts; statements are recorded without them.
package telemetry
