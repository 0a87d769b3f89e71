package authz

import (
	"context"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/flowlock/flowlock/internal/risk"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Record is what one Check reports to a Recorder.
type Record struct {
	Outcome  Outcome
	Mode     Mode
	Score    uint8
	Detector risk.Reason // see Decision.Detector
	Excluded bool        // the path was left out of timing (--exclude-path)
	Fallback Fallback
	// Cause is the precise reason behind Fallback (see Client.Cause), and
	// Peer the address that sent the request: the proxy, or the client
	// itself with no proxy in front; invalid when unknown. Together they
	// let a recorder say which proxy is misconfigured and how.
	Cause Cause
	Peer  netip.Addr
	// TimeSkewed is set when Envoy's request time was present but too far
	// from the local clock to be believed.
	TimeSkewed bool
	// Failed is set when Flow Lock itself failed and answered with a gRPC
	// error (the proxy then applies its failure mode).
	Failed bool
	// Start is when the check began, by the local clock, and Duration how
	// long it took: recorders need not read the clock again.
	Start    time.Time
	Duration time.Duration
}

// Label is the outcome a Record is counted under: Failed when Flow Lock
// failed, ExcludedPath for an allowed request on an excluded path, and the
// policy's outcome otherwise.
func (r Record) Label() Outcome {
	switch {
	case r.Failed:
		return Failed
	case r.Outcome == Allowed && r.Excluded:
		return ExcludedPath
	}
	return r.Outcome
}

// Recorder receives a Record for every decision, for metrics. Implementations
// must be cheap and must not block: they run on the request path.
type Recorder interface {
	RecordCheck(Record)
}

// ServerOptions configure the gRPC Check server.
type ServerOptions struct {
	Policy *Policy
	Rules  ClientRules
	// MaxSkew bounds how far Envoy's request time (attributes.request.time)
	// may be from the local clock to be used; beyond it, the local clock is
	// used. 0 (or less) always uses the local clock.
	MaxSkew  time.Duration
	Now      func() time.Time // nil means time.Now
	Recorder Recorder         // nil records nothing
	Logger   *slog.Logger     // nil discards
	// Tarpit holds the answers of quarantined clients under
	// ActionTarpit; nil answers at once. Share one with ForwardAuth, so
	// that its cap bounds both.
	Tarpit *Tarpit
}

// Server implements Envoy's envoy.service.auth.v3.Authorization service.
type Server struct {
	policy  *Policy
	rules   ClientRules
	headers headerTable // the request headers a Check reads
	claims  *claimPath  // the JWT claim the wire decoder reads; nil for none
	names   *names      // stable copies of the lean path's kept strings
	maxSkew time.Duration
	now     func() time.Time
	rec     Recorder
	log     *slog.Logger
	tarpit  *Tarpit
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// NewServer returns a Check server over the given policy.
func NewServer(o ServerOptions) *Server {
	s := &Server{policy: o.Policy, rules: o.Rules, maxSkew: o.MaxSkew, now: o.Now, rec: o.Recorder, log: o.Logger,
		headers: newHeaderTable(&o.Rules), claims: newClaimPath(&o.Rules), tarpit: o.Tarpit, names: newNames()}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rec == nil {
		s.rec = nopRecorder{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "authz")
	return s
}

type nopRecorder struct{}

func (nopRecorder) RecordCheck(Record) {}

// Check decides one request for Envoy. A deny is a normal response (403 with
// Retry-After); Check returns a gRPC error only when Flow Lock itself fails,
// so that Envoy's failure_mode_allow decides what happens then.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, err error) {
	local := s.now()
	defer func() {
		if r := recover(); r != nil {
			resp, err = nil, s.failed(local, r)
		}
	}()

	var in Input
	readInput(req, s.headers, s.claims, &in)
	d := s.decide(ctx, &in, local)
	s.hold(ctx, d)
	return responseFor(d, in.Strip), nil
}

// hold delays the answer of a quarantined client under ActionTarpit (see
// Tarpit.Hold); every other answer goes at once.
func (s *Server) hold(ctx context.Context, d Decision) {
	if d.Action == ActionTarpit {
		s.tarpit.Hold(ctx)
	}
}

// failed answers a Check that panicked. A bug must cost one request its
// check, never the process: Envoy fails open on the error, and the panic
// is logged for a fix.
func (s *Server) failed(local time.Time, r any) error {
	s.log.Error("check panicked", "panic", r, "stack", string(debug.Stack()))
	recordFailed(s.rec, s.policy, local)
	return status.Error(codes.Internal, "flowlock: internal error")
}

// recordFailed records a Check that Flow Lock itself failed (a panic, a
// request it could not read), which the proxy answers by its failure mode.
func recordFailed(rec Recorder, p *Policy, start time.Time) {
	rec.RecordCheck(Record{Failed: true, Mode: p.Mode(), Start: start, Duration: time.Since(start)})
}

// decide is a Check after its request was read: it resolves the client,
// asks the policy, and records the decision. Every way of reading a
// CheckRequest ends here.
func (s *Server) decide(ctx context.Context, in *Input, local time.Time) Decision {
	client := s.rules.ResolveWith(in.Source, in.ForwardedFor, in.IdentityValue, in.Claim, in.Fingerprint)
	now, skewed := requestTime(in.Time, local, s.maxSkew)
	d := s.policy.Decide(Request{Client: client, Path: in.Path, Now: now, UserAgent: in.UserAgent})

	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.LogAttrs(ctx, slog.LevelDebug, "check",
			slog.String("identity", client.ID.Masked()), slog.String("decision", d.Outcome.String()),
			slog.Bool("allow", d.Allow), slog.Int("score", int(d.Score)), slog.String("reason", d.Reason),
			slog.String("fallback", client.Fallback.String()))
	}
	s.rec.RecordCheck(Record{
		Outcome: d.Outcome, Mode: s.policy.Mode(), Score: d.Score, Detector: d.Detector,
		Excluded: d.Excluded,
		Fallback: client.Fallback, Cause: client.Cause, Peer: in.Source,
		TimeSkewed: skewed, Start: local, Duration: time.Since(local),
	})
	return d
}

// requestTime uses the time Envoy stamped on the request when it is within
// maxSkew of the local clock: it is closer to the client's real rhythm than
// the time the Check reaches us, after queueing in Envoy and the network.
// skewed reports a stamp that was present but not believed.
func requestTime(t, local time.Time, maxSkew time.Duration) (time.Time, bool) {
	if t.IsZero() || maxSkew <= 0 {
		return local, false
	}
	if d := t.Sub(local); d > maxSkew || d < -maxSkew {
		return local, true
	}
	return t, false
}
