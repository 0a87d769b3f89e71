package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/listen"
	"github.com/flowlock/flowlock/internal/metrics"
)

// fdReserve is how many file descriptors are kept out of the listeners'
// connection caps for everything else the process opens: the listening
// sockets, the state file and its temporary copy, the TLS files, epoll,
// logs.
const fdReserve = 64

// grpcMaxHeaderListSize bounds the gRPC request headers (metadata, not
// the HTTP headers inside a CheckRequest). Envoy sends a few hundred bytes;
// grpc-go's default would accept 16 MiB per call.
const grpcMaxHeaderListSize = 64 << 10

// keepaliveMinTime is the shortest client ping interval accepted; a client
// pinging more often is sent GOAWAY. Envoy's connection_keepalive in
// deploy/envoy.yaml pings every 30s.
const keepaliveMinTime = 10 * time.Second

// openListeners opens the gRPC, HTTP and (when configured) forward-auth
// listeners with their connection caps, allow-lists and TLS, and builds the
// gRPC server's resource limits. An error names the setting at fault.
func openListeners(cfg config.Config, log *slog.Logger) (_ *listeners, err error) {
	if cfg.Demo && cfg.GRPCTLSCert != "" {
		return nil, errors.New("--demo sends its simulated Checks in plaintext; it cannot be used with --grpc-tls-cert")
	}
	grpcCap, httpCap, faCap := fitConnCaps(cfg, log)

	grpcCerts, err := loadCerts("grpc", cfg.GRPCTLSCert, cfg.GRPCTLSKey, cfg.GRPCClientCA, "h2", log)
	if err != nil {
		return nil, err
	}
	httpCerts, err := loadCerts("http", cfg.HTTPTLSCert, cfg.HTTPTLSKey, cfg.HTTPClientCA, "http/1.1", log)
	if err != nil {
		return nil, err
	}
	faCerts, err := loadCerts("forward-auth", cfg.ForwardAuthTLSCert, cfg.ForwardAuthTLSKey, cfg.ForwardAuthClientCA, "http/1.1", log)
	if err != nil {
		return nil, err
	}

	ls := &listeners{}
	defer func() {
		if err != nil {
			ls.close()
		}
	}()
	if ls.grpc, err = ls.listenTCP("grpc-addr", cfg.GRPCAddr, listen.Options{
		Name: "grpc", MaxConns: grpcCap, Allow: cfg.GRPCAllowPeers, TLS: grpcCerts != nil, Logger: log,
	}, nil); err != nil {
		return nil, err
	}
	if ls.http, err = ls.listenTCP("http-addr", cfg.HTTPAddr, listen.Options{
		Name: "http", MaxConns: httpCap, TLS: httpCerts != nil, Logger: log,
	}, httpCerts); err != nil {
		return nil, err
	}
	if cfg.ForwardAuthAddr != "" {
		if ls.forwardAuth, err = ls.listenTCP("forward-auth-addr", cfg.ForwardAuthAddr, listen.Options{
			Name: "forward-auth", MaxConns: faCap, Allow: cfg.ForwardAuthAllowPeers, TLS: faCerts != nil, Logger: log,
		}, faCerts); err != nil {
			return nil, err
		}
	}

	ls.grpcOptions = []grpc.ServerOption{
		grpc.MaxRecvMsgSize(cfg.GRPCMaxRecvBytes),
		grpc.MaxConcurrentStreams(uint32(cfg.GRPCMaxStreams)),
		grpc.MaxHeaderListSize(grpcMaxHeaderListSize),
		grpc.ConnectionTimeout(cfg.GRPCHandshakeTimeout),
		grpc.NumStreamWorkers(authz.StreamWorkers(cfg.GRPCMaxInflight)),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: cfg.GRPCIdleTimeout, // 0: never
			Time:              cfg.GRPCKeepaliveTime,
			Timeout:           cfg.GRPCKeepaliveTime,
		}),
	}
	calls := newCallLimit(cfg.GRPCMaxInflight, cfg.GRPCCheckTimeout)
	ls.grpcOptions = append(ls.grpcOptions, grpc.InTapHandle(calls.admit))
	if grpcCerts != nil {
		ls.grpcOptions = append(ls.grpcOptions, grpc.Creds(credentials.NewTLS(grpcCerts.ServerConfig())))
	}
	return ls, nil
}

// listenTCP listens on addr with opts, and serves TLS from certs when it is
// not nil. The gRPC listener gets nil: gRPC does its own TLS.
func (ls *listeners) listenTCP(flag, addr string, opts listen.Options, certs *listen.Certs) (net.Listener, error) {
	inner, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--%s %s: %w", flag, addr, err)
	}
	limited := listen.Limit(inner, opts)
	ls.limited = append(ls.limited, limited)
	var l net.Listener = limited
	if certs != nil {
		l = tls.NewListener(l, certs.ServerConfig())
	}
	return l, nil
}

// counts reads every listener's connection counts, for metrics.
func (ls *listeners) counts() []metrics.ListenerCounts {
	out := make([]metrics.ListenerCounts, 0, len(ls.limited))
	for _, l := range ls.limited {
		st := l.Stats()
		out = append(out, metrics.ListenerCounts{
			Name: l.Name(), Open: float64(st.Open),
			Evicted: float64(st.Evicted), Refused: float64(st.Refused), Denied: float64(st.Denied),
		})
	}
	return out
}

// loadCerts loads the TLS files of the listener whose flags start with
// prefix, or returns nil when it has none.
func loadCerts(prefix, cert, key, ca, proto string, log *slog.Logger) (*listen.Certs, error) {
	if cert == "" {
		return nil, nil
	}
	certs, err := listen.LoadCerts(listen.CertOptions{
		CertFile: cert, KeyFile: key, ClientCAFile: ca, NextProtos: []string{proto},
		Logger: log.With("listener", prefix),
	})
	if err != nil {
		return nil, fmt.Errorf("--%s-tls-cert, --%s-tls-key, --%s-client-ca: %w", prefix, prefix, prefix, err)
	}
	if ca == "" && prefix != "http" { // the HTTP side has its admin token
		log.Info("tls without client certificates: any peer that reaches the port may send checks", "listener", prefix)
	}
	return certs, nil
}

// fitConnCaps returns the connection caps of the gRPC, HTTP and
// forward-auth listeners, lowered in proportion when together with
// fdReserve they exceed the process's descriptor limit: past it, accept
// fails and so does every file the process opens, the state file included.
func fitConnCaps(cfg config.Config, log *slog.Logger) (grpcCap, httpCap, faCap int) {
	grpcCap, httpCap = cfg.GRPCMaxConns, cfg.HTTPMaxConns
	if cfg.ForwardAuthAddr != "" {
		faCap = cfg.ForwardAuthMaxConns
	}
	limit, ok := listen.OpenFileLimit()
	if !ok || limit > 1<<30 {
		return grpcCap, httpCap, faCap
	}
	avail := int(limit) - fdReserve
	sum := grpcCap + httpCap + faCap
	if sum <= avail {
		return grpcCap, httpCap, faCap
	}
	scale := func(n int) int {
		if n == 0 {
			return 0
		}
		return max(1, int(int64(n)*int64(max(avail, 3))/int64(sum)))
	}
	g, h, f := scale(grpcCap), scale(httpCap), scale(faCap)
	log.Warn("connection caps lowered to fit the open-file limit (raise it with ulimit -n or the container runtime)",
		"open_file_limit", limit, "grpc_max_conns", g, "http_max_conns", h, "forward_auth_max_conns", f)
	return g, h, f
}

// Methods the call limit treats apart.
const (
	checkMethod       = "/envoy.service.auth.v3.Authorization/Check"
	healthCheckMethod = "/grpc.health.v1.Health/Check"
)

// Health checks have a pool of their own, so that a flood of Checks that
// fills --grpc-max-inflight does not also fail the kubelet's liveness probe
// (a restart would only make things worse). A health check answers in
// microseconds, so a small pool and a short deadline are plenty.
const (
	healthInflight = 64
	healthTimeout  = time.Second
)

// callLimit bounds the gRPC calls in flight across all connections. Each
// call may hold up to --grpc-max-recv-bytes while its message arrives, and
// the per-connection stream cap alone multiplies by the connection count,
// so only a process-wide cap bounds that memory. It runs as the server's
// tap, before a call's message is read.
type callLimit struct {
	calls, health pool
	checkTimeout  time.Duration // deadline of a Check that brings none
}

// pool is a count of calls in flight with a cap.
type pool struct {
	max      int64
	inflight atomic.Int64
	release  func() // releases a slot; made once, so admit does not allocate it
}

// newCallLimit returns a limit of n calls in flight, besides
// healthInflight health checks.
func newCallLimit(n int, checkTimeout time.Duration) *callLimit {
	l := &callLimit{checkTimeout: checkTimeout}
	l.calls.max, l.health.max = int64(n), healthInflight
	l.calls.release = func() { l.calls.inflight.Add(-1) }
	l.health.release = func() { l.health.inflight.Add(-1) }
	return l
}

// admit counts a new call, or refuses it with RESOURCE_EXHAUSTED when its
// pool is full. The slot is released when the call's context ends, which
// gRPC guarantees when the call finishes, fails or its connection closes.
// A Check (or health check) without a deadline gets one, so a client that
// stalls halfway through a message cannot hold its slot for ever; Watch
// and reflection streams are meant to last and get none.
func (l *callLimit) admit(ctx context.Context, info *tap.Info) (context.Context, error) {
	p, timeout := &l.calls, time.Duration(0)
	switch info.FullMethodName {
	case checkMethod:
		timeout = l.checkTimeout
	case healthCheckMethod:
		p, timeout = &l.health, healthTimeout
	}
	if p.inflight.Add(1) > p.max {
		p.inflight.Add(-1)
		return nil, status.Errorf(codes.ResourceExhausted, "more than %d calls in flight (--grpc-max-inflight)", p.max)
	}
	if _, ok := ctx.Deadline(); !ok && timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		context.AfterFunc(ctx, func() {
			cancel()
			p.release()
		})
		return ctx, nil
	}
	context.AfterFunc(ctx, p.release)
	return ctx, nil
}
