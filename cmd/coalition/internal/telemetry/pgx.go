package telemetry

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// maxStatementBytes bounds the SQL text recorded on a span.
const maxStatementBytes = 2048

const tracerName = "github.com/coalitionexchange/coalition/cmd/coalition/internal/telemetry"

// Attribute keys of database spans (OpenTelemetry semantic conventions).
const (
	attrDBSystem    = attribute.Key("db.system.name")
	attrDBStatement = attribute.Key("db.query.text")
	attrDBOperation = attribute.Key("db.operation.name")
	attrDBRows      = attribute.Key("db.response.returned_rows")
	attrBatchSize   = attribute.Key("db.operation.batch.size")
)

// PgxTracer is a pgx.QueryTracer and pgx.BatchTracer: one span per statement and one per batch,
// children of the span in the query's context (the RPC that ran the transaction). Statements
// are recorded without their arguments. Set it as pgxpool.Config.ConnConfig.Tracer.
type PgxTracer struct {
	tracer trace.Tracer
	system string
}

// NewPgxTracer returns a tracer creating spans from tp. system names the database engine in
// db.system.name ("postgresql" or "cockroachdb").
func NewPgxTracer(tp trace.TracerProvider, system string) *PgxTracer {
	return &PgxTracer{tracer: tp.Tracer(tracerName), system: system}
}

// TraceQueryStart implements pgx.QueryTracer.
func (t *PgxTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	op := operation(data.SQL)
	ctx, _ = t.tracer.Start(ctx, spanName(op), trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attrDBSystem.String(t.system), attrDBOperation.String(op), attrDBStatement.String(truncate(data.SQL)),
	))
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (t *PgxTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attrDBRows.Int64(data.CommandTag.RowsAffected()))
	end(span, data.Err)
}

// TraceBatchStart implements pgx.BatchTracer.
func (t *PgxTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchStartData) context.Context {
	size := 0
	if data.Batch != nil {
		size = data.Batch.Len()
	}
	ctx, _ = t.tracer.Start(ctx, "BATCH", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attrDBSystem.String(t.system), attrDBOperation.String("BATCH"), attrBatchSize.Int(size),
	))
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer: each statement of the batch is an event on the
// batch's span, since the statements travel in one round trip.
func (t *PgxTracer) TraceBatchQuery(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	attrs := []attribute.KeyValue{attrDBStatement.String(truncate(data.SQL)), attrDBRows.Int64(data.CommandTag.RowsAffected())}
	if data.Err != nil {
		attrs = append(attrs, attribute.String("error", data.Err.Error()))
	}
	trace.SpanFromContext(ctx).AddEvent("query", trace.WithAttributes(attrs...))
}

// TraceBatchEnd implements pgx.BatchTracer.
func (t *PgxTracer) TraceBatchEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceBatchEndData) {
	end(trace.SpanFromContext(ctx), data.Err)
}

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// operation is the statement's first keyword in upper case ("SELECT", "INSERT", "BEGIN").
func operation(sql string) string {
	fields := strings.Fields(sql)
	if len(fields) == 0 {
		return "QUERY"
	}
	return strings.ToUpper(strings.Trim(fields[0], "("))
}

func spanName(op string) string { return "db " + op }

func truncate(sql string) string {
	sql = strings.TrimSpace(sql)
	if len(sql) <= maxStatementBytes {
		return sql
	}
	return sql[:maxStatementBytes] + "..."
}
