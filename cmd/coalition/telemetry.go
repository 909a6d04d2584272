package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/coalitionexchange/coalition/cmd/coalition/internal/telemetry"
	"github.com/coalitionexchange/coalition/settlement/sqlstore"
)

// tracingFlushTimeout bounds how long buffered spans are flushed at exit.
const tracingFlushTimeout = 5 * time.Second

// startTracing returns the process's tracer provider: OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is
// set, a no-op otherwise. The returned stop flushes it; call it once the gateway has drained.
func startTracing(ctx context.Context, getenv func(string) string, log *slog.Logger) (trace.TracerProvider, func(), error) {
	version := "(devel)"
	if info, ok := debug.ReadBuildInfo(); ok {
		version = info.Main.Version
	}
	p, err := telemetry.NewProvider(ctx, telemetry.Config{Getenv: getenv, ServiceName: "coalition-gateway", Version: version})
	if err != nil {
		return nil, nil, err
	}
	if p.Enabled {
		log.Info("tracing enabled", "otlp_endpoint", getenv(telemetry.EnvEndpoint)+getenv(telemetry.EnvTracesEndpoint))
	}
	stop := func() {
		sctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		defer cancel()
		if err := p.Shutdown(sctx); err != nil {
			log.Warn("tracing shutdown", "err", err)
		}
	}
	return p, stop, nil
}

// openPool is sqlstore.Open with a pgx tracer that gives every statement a span under the
// request that ran it.
func openPool(ctx context.Context, url string, maxConns int32, tp trace.TracerProvider) (*pgxpool.Pool, error) {
	return sqlstore.OpenWithTracer(ctx, url, maxConns, telemetry.NewPgxTracer(tp, "postgresql"))
}
