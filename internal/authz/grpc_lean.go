package authz

import (
	"context"
	"log/slog"
	"runtime"
	"slices"
	"sync"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// The lean gRPC boundary. Most of a Check's cost is gRPC and protobuf, not
// Flow Lock: the generated decoder builds every header, peer and metadata
// entry of Envoy's CheckRequest as Go values, and the standard codec
// marshals every answer again. Here the server reads only what Input needs
// straight from the request bytes (input_wire.go), and sends answers from
// bytes encoded once (checkAnswer), through a codec that handles the two
// types of this path and leaves every other message (health, reflection,
// a generated CheckRequest) to the standard proto codec.

// NewGRPCServer returns a gRPC server, built with opts, on which Check is
// answered by s through the lean codec. Register the other services
// (health, reflection) on it as usual: they keep the standard codec. The
// codec option comes last, so that it is the one in force.
//
// Interceptors see the request as an opaque *checkCall, not a
// *authv3.CheckRequest: Flow Lock's own server installs none.
func (s *Server) NewGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	gs := grpc.NewServer(append(slices.Clip(opts), grpc.ForceServerCodecV2(checkCodec{}))...)
	gs.RegisterService(&leanAuthorization, s)
	return gs
}

// leanAuthorization is envoy.service.auth.v3.Authorization (the generated
// Authorization_ServiceDesc, which may not be copied) with Check answered
// by leanCheck.
var leanAuthorization = grpc.ServiceDesc{
	ServiceName: "envoy.service.auth.v3.Authorization",
	HandlerType: (*authv3.AuthorizationServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Check", Handler: leanCheck}},
	Metadata:    "envoy/service/auth/v3/external_auth.proto",
}

// standardCodec is gRPC's proto codec, registered by its package.
var standardCodec = encoding.GetCodecV2(grpcproto.Name)

// checkCodec is the standard proto codec except for the lean Check's own
// types: it hands a *checkCall the request bytes undecoded, and sends a
// *checkAnswer's bytes as they are.
type checkCodec struct{}

func (checkCodec) Name() string { return grpcproto.Name }

func (checkCodec) Marshal(v any) (mem.BufferSlice, error) {
	if a, ok := v.(*checkAnswer); ok {
		if a.wire != nil {
			// Shared and read-only: gRPC reads the bytes and Frees the
			// buffer, which for a SliceBuffer does nothing.
			return a.wire, nil
		}
		v = a.msg // did not marshal when made: the standard codec's error
	}
	return standardCodec.Marshal(v)
}

func (checkCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if c, ok := v.(*checkCall); ok {
		// gRPC frees data when this returns: keep a reference (a copy
		// only when the message spans several buffers) until the Check
		// ends, since Input's strings point into it.
		c.buf = data.MaterializeToBuffer(mem.DefaultBufferPool())
		return nil
	}
	return standardCodec.Unmarshal(data, v)
}

// checkCall is one Check on the lean path: the request bytes, held from
// the codec until the answer is chosen, and the decoder whose Input points
// into them. Calls are pooled, so that a Check allocates nothing.
type checkCall struct {
	buf mem.Buffer
	dec wireDecoder
}

var checkCalls = sync.Pool{New: func() any { return new(checkCall) }}

// maxPooledNames bounds the x-flowlock-* name lists a pooled call keeps:
// a hostile request may grow them, and the pool should not keep that.
const maxPooledNames = 64

// release gives the request bytes back to gRPC and the call to the pool.
// Nothing read from the bytes may be used after it.
func (c *checkCall) release() {
	if c.buf != nil {
		c.buf.Free()
	}
	if cap(c.dec.in.Strip) > maxPooledNames || cap(c.dec.strip) > maxPooledNames {
		*c = checkCall{}
	} else {
		// Keep the lists' room, not the strings in them.
		clear(c.dec.in.Strip)
		clear(c.dec.strip)
		*c = checkCall{dec: wireDecoder{in: Input{Strip: c.dec.in.Strip[:0]}, strip: c.dec.strip[:0]}}
	}
	checkCalls.Put(c)
}

// leanCheck is the gRPC method handler of the lean Check.
func leanCheck(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*Server)
	c := checkCalls.Get().(*checkCall)
	// After the handler returns, gRPC sends the answer: an answer never
	// points into the call (see checkWire).
	defer c.release()
	if err := dec(c); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return s.checkWire(ctx, c)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, c, info, func(ctx context.Context, req any) (any, error) {
		return s.checkWire(ctx, req.(*checkCall))
	})
}

// checkWire is Check on the lean path: it decodes the request bytes into
// Input, decides, and answers with an encoded answer. A request protobuf
// could not decode is answered with codes.InvalidArgument and recorded as
// Failed, so that the proxy applies its failure mode.
func (s *Server) checkWire(ctx context.Context, c *checkCall) (answer any, err error) {
	local := s.now()
	defer func() {
		if r := recover(); r != nil {
			answer, err = nil, s.failed(local, r)
		}
	}()
	var b []byte
	if c.buf != nil {
		b = c.buf.ReadOnlyData()
	}
	if err := c.dec.decode(b, s.headers, s.claims); err != nil {
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.LogAttrs(ctx, slog.LevelDebug, "malformed CheckRequest", slog.String("error", err.Error()))
		}
		recordFailed(s.rec, s.policy, local)
		return nil, status.Error(codes.InvalidArgument, "flowlock: malformed CheckRequest: "+err.Error())
	}
	in := &c.dec.in
	// What the decision may keep beyond the Check (a name identity, the
	// path) must not point into the request buffer: see names.
	in.Path = s.names.intern(in.Path)
	in.IdentityValue = s.names.internName(in.IdentityValue)
	in.Claim = s.names.internName(in.Claim)
	d := s.decide(ctx, in, local)
	s.hold(ctx, d)
	a, ok := answerFor(d, in.Strip)
	if !ok {
		return nil, status.Error(codes.Internal, "flowlock: the answer could not be encoded")
	}
	return a, nil
}

// StreamWorkers is how many goroutines serve gRPC streams. Without
// workers gRPC starts a goroutine per Check, whose stack then grows from
// 2 KiB to what a Check needs, copied and its frames rescanned at each
// doubling: the load harness's profile (perf, one CPU) put that at a fifth
// of Flow Lock's CPU per Check. A worker keeps its grown stack from one
// Check to the next. gRPC hands a new stream to a worker only if one is
// idle at that instant, and a connection's reader dispatches a burst of
// streams before any worker runs, so there must be about as many workers
// as Checks in flight: 64 per CPU (a profile at 4 per CPU still showed
// most streams on fresh goroutines), never more than the calls allowed
// in flight, and at most 1024 (an idle worker costs its stack, a few KiB).
// docs/RATIONALE.md ("gRPC stream workers") gives the profile's commands.
// grpc.NumStreamWorkers is marked EXPERIMENTAL in grpc-go: an upgrade that
// drops it fails the build here, and the cost comes back (the load
// harness's CPU per Check shows it). The transport floor of test/load uses
// the same count, so that it stays "the least gRPC costs".
func StreamWorkers(maxInflight int) uint32 {
	return uint32(max(1, min(64*runtime.GOMAXPROCS(0), maxInflight, 1024)))
}
