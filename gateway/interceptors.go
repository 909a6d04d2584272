package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"runtime/debug"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/coalitionexchange/coalition/gateway/tlsconfig"
	"github.com/coalitionexchange/coalition/settlement"
)

type identityKey struct{}

// callSlot is put in the context by the observe interceptor and filled by the auth
// interceptor further in, so the request's log line and metrics name the caller.
type callSlot struct {
	id tlsconfig.Identity
	ok bool
}

type callSlotKey struct{}

// callerFrom returns the identity the auth interceptor established for this call.
func callerFrom(ctx context.Context) (tlsconfig.Identity, bool) {
	if id, ok := ctx.Value(identityKey{}).(tlsconfig.Identity); ok {
		return id, true
	}
	if slot, ok := ctx.Value(callSlotKey{}).(*callSlot); ok && slot.ok {
		return slot.id, true
	}
	return tlsconfig.Identity{}, false
}

// partnerFrom returns the calling partner's id ("" when the caller is not a partner).
func partnerFrom(ctx context.Context) string {
	if id, ok := callerFrom(ctx); ok && id.Role == tlsconfig.RolePartner {
		return id.Name
	}
	return ""
}

// rolesByService says which roles may call each service; a service not listed is refused.
var rolesByService = map[string][]tlsconfig.Role{
	"coalition.v1.PointsService":               {tlsconfig.RolePartner},
	"coalition.v1.AdminService":                {tlsconfig.RoleOperator},
	"coalition.v1.SettlementService":           {tlsconfig.RoleFinance},
	"coalition.v1.ExchangeService":             {tlsconfig.RoleOperator, tlsconfig.RolePartner},
	"grpc.health.v1.Health":                    {tlsconfig.RolePartner, tlsconfig.RoleFinance, tlsconfig.RoleOperator},
	"grpc.reflection.v1.ServerReflection":      {tlsconfig.RolePartner, tlsconfig.RoleFinance, tlsconfig.RoleOperator},
	"grpc.reflection.v1alpha.ServerReflection": {tlsconfig.RolePartner, tlsconfig.RoleFinance, tlsconfig.RoleOperator},
}

// rolesByMethod overrides rolesByService for single methods.
var rolesByMethod = map[string][]tlsconfig.Role{
	// Partners submit their own records; finance imports them on a partner's behalf.
	"/coalition.v1.SettlementService/SubmitPartnerRecords": {tlsconfig.RolePartner, tlsconfig.RoleFinance},
	// Dead-lettered partner events are for finance and ops to see and replay (DESIGN §6).
	"/coalition.v1.AdminService/ListOutboxEvents":   {tlsconfig.RoleOperator, tlsconfig.RoleFinance},
	"/coalition.v1.AdminService/ReplayOutboxEvents": {tlsconfig.RoleOperator, tlsconfig.RoleFinance},
}

// PartnerDirectory looks partners up by id. Errors: settlement.ErrPartnerUnknown.
type PartnerDirectory interface {
	Partner(ctx context.Context, id string) (settlement.Partner, error)
}

// interceptors holds what the interceptor chain needs.
type interceptors struct {
	log         *slog.Logger
	metrics     *Metrics
	partners    *partnerCache
	limiter     *partnerLimiter // nil: no rate limit
	trustDomain string
}

// recoverUnary turns a handler panic into INTERNAL instead of a dead process.
func (ic *interceptors) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer ic.recovered(ctx, info.FullMethod, &err)
	return h(ctx, req)
}

// recoverStream is recoverUnary for streaming RPCs.
func (ic *interceptors) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer ic.recovered(ss.Context(), info.FullMethod, &err)
	return h(srv, ss)
}

// recovered, deferred, turns a panic into INTERNAL in *err and logs it with its stack.
func (ic *interceptors) recovered(ctx context.Context, method string, err *error) {
	if r := recover(); r != nil {
		ic.log.ErrorContext(ctx, "handler panic", "method", method, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		*err = withInfo(codes.Internal, "internal error", ReasonInternal, nil).Err()
	}
}

// observeUnary maps errors to statuses, then logs one line and records metrics per request.
func (ic *interceptors) observeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	ctx = context.WithValue(ctx, callSlotKey{}, &callSlot{})
	resp, err := h(ctx, req)
	var attrs []any
	if k, ok := req.(interface{ GetIdempotencyKey() string }); ok {
		attrs = append(attrs, "idempotency_key", k.GetIdempotencyKey())
	}
	if r, ok := resp.(interface{ GetReplayed() bool }); ok && r.GetReplayed() {
		attrs = append(attrs, "replayed", true)
	}
	return resp, ic.observe(ctx, info.FullMethod, start, err, attrs...)
}

// observeStream is observeUnary for streaming RPCs (SubmitPartnerRecords, reflection, health
// watches): a domain or validation error a stream handler returns reaches the caller as the
// same typed status a unary call gets, not as UNKNOWN.
func (ic *interceptors) observeStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	ctx := context.WithValue(ss.Context(), callSlotKey{}, &callSlot{})
	err := h(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
	return ic.observe(ctx, info.FullMethod, start, err)
}

// observe maps err to the status the caller gets, counts and times the call, and logs its line.
func (ic *interceptors) observe(ctx context.Context, fullMethod string, start time.Time, err error, extra ...any) error {
	st := Status(ctx, ic.log, fullMethod, err)
	method := path.Base(fullMethod)
	code := st.Code()
	partner := partnerFrom(ctx)
	ic.metrics.requests.WithLabelValues(method, code.String(), partner).Inc()
	ic.metrics.latency.WithLabelValues(method).Observe(time.Since(start).Seconds())
	attrs := []any{"method", method, "code", code.String(), "duration_ms", float64(time.Since(start).Microseconds()) / 1000}
	if caller, ok := callerFrom(ctx); ok {
		attrs = append(attrs, "caller", caller.URI)
	}
	if partner != "" {
		attrs = append(attrs, "partner", partner)
	}
	attrs = append(attrs, traceLogAttrs(ctx, partner)...)
	attrs = append(attrs, extra...)
	if reason := ReasonOf(st.Err()); reason != "" {
		attrs = append(attrs, "reason", reason)
	}
	ic.log.InfoContext(ctx, "rpc", attrs...)
	return st.Err()
}

// authUnary reads the caller from the verified peer certificate, checks its role may call the
// service, and for partners that the partner is registered and active and within its rate
// limit.
func (ic *interceptors) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := ic.authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// authStream is authUnary for streaming RPCs (reflection, health watch).
func (ic *interceptors) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := ic.authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
}

func (ic *interceptors) authorize(ctx context.Context, fullMethod string) (context.Context, error) {
	id, err := tlsconfig.FromPeer(ctx, ic.trustDomain)
	if err != nil {
		return ctx, withInfo(codes.Unauthenticated, "no valid client identity: "+err.Error(), ReasonUnauthenticated, nil).Err()
	}
	service := strings.TrimPrefix(path.Dir(fullMethod), "/")
	roles, ok := rolesByMethod[fullMethod]
	if !ok {
		roles = rolesByService[service]
	}
	if !roleAllowed(roles, id.Role) {
		return ctx, withInfo(codes.PermissionDenied, fmt.Sprintf("role %s may not call %s", id.Role, service), ReasonRoleNotAllowed, nil).Err()
	}
	ctx = context.WithValue(ctx, identityKey{}, id)
	if slot, ok := ctx.Value(callSlotKey{}).(*callSlot); ok {
		slot.id, slot.ok = id, true
	}
	if id.Role != tlsconfig.RolePartner {
		return ctx, nil
	}
	p, err := ic.partners.get(ctx, id.Name)
	if err != nil {
		return ctx, Status(ctx, ic.log, fullMethod, err).Err()
	}
	if p.Status != settlement.PartnerActive {
		return ctx, Status(ctx, ic.log, fullMethod, fmt.Errorf("%w: %s", settlement.ErrPartnerSuspended, p.ID)).Err()
	}
	// The rate limit comes last (DESIGN §3): a refused caller does not spend its partner's
	// calls, and probes do not count.
	if ic.limiter != nil && service != "grpc.health.v1.Health" {
		if wait, ok := ic.limiter.admit(id.Name); !ok {
			return ctx, ic.limiter.refusal(id.Name, wait).Err()
		}
	}
	return ctx, nil
}

func roleAllowed(roles []tlsconfig.Role, r tlsconfig.Role) bool {
	for _, allowed := range roles {
		if allowed == r {
			return true
		}
	}
	return false
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }
