// Package middleware protects a Go net/http service with Flow Lock, for
// teams with no Envoy or service mesh in front of it. Before each request
// reaches the wrapped handler, it asks a Flow Lock service over the same
// ext_authz gRPC API Envoy uses, and acts on the answer as Envoy would:
//
//   - allow: the request goes on with Flow Lock's headers (x-flowlock-risk)
//     and without any x-flowlock-* header the client sent;
//   - deny: the client gets Flow Lock's own answer, status, headers and
//     body (403 with Retry-After and a JSON body while quarantined);
//   - allow with x-flowlock-route: honeypot (Flow Lock's
//     --quarantine-action honeypot, for a quarantined client): the request
//     goes to Options.Honeypot, the decoy, never to the wrapped handler;
//     without a decoy it is refused with 403;
//   - Flow Lock unreachable, slow or failing: the request goes on unchecked
//     (fail open), unless Options.FailClosed is set.
//
// One Middleware holds one gRPC connection; share it between handlers.
// The package imports nothing of Flow Lock's internals, only the public
// Envoy and gRPC modules, so any module can import it.
package middleware

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultTimeout bounds one check when Options.Timeout is zero. A check
// takes microseconds on Flow Lock's side; on a local network it answers
// well within this, and a stuck Flow Lock costs each request at most this
// much before the request goes on unchecked.
const DefaultTimeout = 100 * time.Millisecond

// UncheckedHeader is set to "true" on a request that went on unchecked
// because Flow Lock could not answer (fail open). It is the header Envoy's
// ext_authz adds with failure_mode_allow_header_add, so an upstream that
// reads it behind Envoy reads it here too. A client-sent value is removed.
const UncheckedHeader = "X-Envoy-Auth-Failure-Mode-Allowed"

// headerPrefix names the headers only Flow Lock may set for the upstream.
const headerPrefix = "X-Flowlock-"

// failureLogEvery is the least time between two log lines about checks
// that failed, so that an outage of Flow Lock logs once every few seconds,
// not once a request.
const failureLogEvery = 10 * time.Second

// Options configure a Middleware. The zero value fails open after
// DefaultTimeout, sends the peer address as the client and no header
// but the path, method and host, and dials without TLS.
type Options struct {
	// Timeout bounds each check, from the request's arrival to Flow
	// Lock's answer. 0 means DefaultTimeout.
	Timeout time.Duration

	// FailClosed refuses a request that could not be checked (Flow Lock
	// unreachable, slow, or answering with an error) with StatusOnError,
	// instead of letting it through. Flow Lock judges behaviour, not
	// permission, so the default is to fail open: a Flow Lock outage must
	// not become an outage of the service.
	FailClosed bool

	// StatusOnError is the status of a refused unchecked request when
	// FailClosed is set. 0 means 403, Envoy's default status_on_error.
	StatusOnError int

	// IdentityHeader is the request header Flow Lock's --identity-header
	// names (an API key or a verified user id), sent with the check when
	// present. Empty sends none. Set it only if the service verifies that
	// header before this middleware runs, as Flow Lock's README explains.
	IdentityHeader string

	// ForwardedFor sends the request's X-Forwarded-For with the peer's
	// address appended, as Envoy does with use_remote_address, so that a
	// Flow Lock started with --xff-trusted-hops or --trusted-proxies can
	// find the client behind the service's own load balancers. Leave it
	// off when clients connect to the service directly: Flow Lock then
	// scores the peer address, which a client cannot forge.
	ForwardedFor bool

	// Logger receives a warning when checks fail (at most one line every
	// 10 s, with the count). nil logs nothing.
	Logger *slog.Logger

	// DialOptions replace the gRPC dial options, which default to a
	// plaintext connection. Pass TLS credentials here for Flow Lock's
	// --grpc-tls-cert.
	DialOptions []grpc.DialOption

	// Honeypot serves the requests Flow Lock routes to a decoy
	// (x-flowlock-route: honeypot, under its --quarantine-action
	// honeypot), typically an httputil.ReverseProxy to flowlock-honeypot.
	// nil refuses them with a bare 403: a quarantined client must never
	// reach the wrapped handler.
	Honeypot http.Handler
}

// routeHeader and routeHoneypot are the request header and value of Flow
// Lock's honeypot answer.
const (
	routeHeader   = "X-Flowlock-Route"
	routeHoneypot = "honeypot"
)

// Middleware asks Flow Lock about each request. Its methods are safe for
// concurrent use.
type Middleware struct {
	conn   *grpc.ClientConn // nil when built with NewWithClient
	client authv3.AuthorizationClient
	opt    Options
	log    *slog.Logger

	failures   atomic.Int64 // checks failed since the last warning
	lastWarned atomic.Int64 // UnixNano of the last warning
}

// New connects to the Flow Lock gRPC address target (host:port) and
// returns a Middleware that asks it about every request. The connection
// is made lazily and re-made by gRPC as needed; Close releases it.
func New(target string, opt Options) (*Middleware, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("flowlock address %q: want host:port: %w", target, err)
	}
	dial := opt.DialOptions
	if dial == nil {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, fmt.Errorf("flowlock address %q: %w", target, err)
	}
	m, err := NewWithClient(authv3.NewAuthorizationClient(conn), opt)
	if err != nil {
		conn.Close()
		return nil, err
	}
	m.conn = conn
	return m, nil
}

// NewWithClient returns a Middleware that asks client, for a service that
// already holds a gRPC connection to Flow Lock. Close does not close it.
func NewWithClient(client authv3.AuthorizationClient, opt Options) (*Middleware, error) {
	if opt.Timeout < 0 {
		return nil, fmt.Errorf("timeout %v: must not be negative", opt.Timeout)
	}
	if opt.Timeout == 0 {
		opt.Timeout = DefaultTimeout
	}
	if opt.StatusOnError == 0 {
		opt.StatusOnError = http.StatusForbidden
	}
	if opt.StatusOnError < 100 || opt.StatusOnError > 599 {
		return nil, fmt.Errorf("status on error %d: not an HTTP status", opt.StatusOnError)
	}
	opt.IdentityHeader = http.CanonicalHeaderKey(strings.TrimSpace(opt.IdentityHeader))
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Middleware{client: client, opt: opt, log: log.With("component", "flowlock-middleware")}, nil
}

// Close closes the connection New opened.
func (m *Middleware) Close() error {
	if m.conn == nil {
		return nil
	}
	return m.conn.Close()
}

// Handler returns next behind the check.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived := time.Now()
		// The upstream trusts X-Flowlock-* and the fail-open marker only
		// from here: drop whatever the client sent, before anything else.
		stripClientHeaders(r.Header)

		ctx, cancel := context.WithDeadline(r.Context(), arrived.Add(m.opt.Timeout))
		resp, err := m.client.Check(ctx, m.checkRequest(r, arrived))
		cancel()
		if err != nil {
			if r.Context().Err() != nil {
				return // the client went away: not Flow Lock's failure
			}
			m.failed(r.Context(), err)
			if m.opt.FailClosed {
				http.Error(w, http.StatusText(m.opt.StatusOnError), m.opt.StatusOnError)
				return
			}
			r.Header.Set(UncheckedHeader, "true")
			next.ServeHTTP(w, r)
			return
		}
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			deny(w, resp.GetDeniedResponse())
			return
		}
		ok := resp.GetOkResponse()
		for _, h := range ok.GetHeadersToRemove() {
			r.Header.Del(h)
		}
		applyHeaders(r.Header, ok.GetHeaders())
		if r.Header.Get(routeHeader) == routeHoneypot {
			// A quarantined client, to be deceived: the decoy, or nothing.
			r.Header.Del(routeHeader)
			if m.opt.Honeypot == nil {
				http.Error(w, http.StatusText(http.StatusForbidden), http.StatusForbidden)
				return
			}
			m.opt.Honeypot.ServeHTTP(w, r)
			return
		}
		applyHeaders(w.Header(), ok.GetResponseHeadersToAdd())
		next.ServeHTTP(w, r)
	})
}

// checkRequest describes r as Envoy's ext_authz filter would: the peer as
// the source, the arrival time as request.time, and the HTTP attributes.
func (m *Middleware) checkRequest(r *http.Request, arrived time.Time) *authv3.CheckRequest {
	headers := make(map[string]string, 5)
	headers[":method"] = r.Method
	headers[":path"] = r.URL.RequestURI()
	headers[":authority"] = r.Host
	peer := peerAddr(r.RemoteAddr)
	if m.opt.IdentityHeader != "" {
		if v := r.Header.Values(m.opt.IdentityHeader); len(v) > 0 {
			headers[strings.ToLower(m.opt.IdentityHeader)] = v[len(v)-1]
		}
	}
	if m.opt.ForwardedFor {
		xff := strings.Join(r.Header.Values("X-Forwarded-For"), ", ")
		if peer != "" {
			if xff != "" {
				xff += ", "
			}
			xff += peer
		}
		if xff != "" {
			headers["x-forwarded-for"] = xff
		}
	}
	var source *authv3.AttributeContext_Peer
	if peer != "" {
		source = &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: peer},
		}}}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: source,
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(arrived),
			Http: &authv3.AttributeContext_HttpRequest{
				Method:   r.Method,
				Path:     r.URL.RequestURI(),
				Host:     r.Host,
				Scheme:   scheme,
				Protocol: r.Proto,
				Headers:  headers,
			},
		},
	}}
}

// peerAddr returns the IP address of a net/http RemoteAddr, or "" when
// it has none (a test request, a Unix socket).
func peerAddr(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return ""
	}
	return ap.Addr().Unmap().WithZone("").String()
}

// deny writes Flow Lock's deny: its status (403 when it gives none, as
// Envoy does), its headers and its body.
func deny(w http.ResponseWriter, d *authv3.DeniedHttpResponse) {
	status := int(d.GetStatus().GetCode())
	if status < 100 || status > 599 {
		status = http.StatusForbidden
	}
	applyHeaders(w.Header(), d.GetHeaders())
	body := d.GetBody()
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body) // the client went away: nobody to tell
}

// applyHeaders applies Flow Lock's header options to h the way Envoy
// applies each append action.
func applyHeaders(h http.Header, opts []*corev3.HeaderValueOption) {
	for _, o := range opts {
		k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
		if k == "" || strings.HasPrefix(k, ":") {
			continue
		}
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h.Add(k, v)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			if h.Get(k) == "" {
				h.Set(k, v)
			}
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if h.Get(k) != "" {
				h.Set(k, v)
			}
		default:
			h.Set(k, v)
		}
	}
}

// stripClientHeaders removes every X-Flowlock-* header and the fail-open
// marker from a client's request.
func stripClientHeaders(h http.Header) {
	for k := range h {
		if len(k) >= len(headerPrefix) && strings.EqualFold(k[:len(headerPrefix)], headerPrefix) {
			delete(h, k)
		}
	}
	h.Del(UncheckedHeader)
}

// failed counts a check that got no answer and logs a warning at most
// once every failureLogEvery.
func (m *Middleware) failed(ctx context.Context, err error) {
	n := m.failures.Add(1)
	now := time.Now().UnixNano()
	last := m.lastWarned.Load()
	if now-last < int64(failureLogEvery) || !m.lastWarned.CompareAndSwap(last, now) {
		return
	}
	m.failures.Add(-n)
	action := "let through unchecked (fail open)"
	if m.opt.FailClosed {
		action = "refused (fail closed)"
	}
	cause := err.Error()
	if status.Code(err) == codes.DeadlineExceeded {
		cause = fmt.Sprintf("no answer within %v (Options.Timeout)", m.opt.Timeout)
	}
	m.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelWarn, "flow lock check failed; requests "+action,
		slog.Int64("failed_checks", n), slog.String("err", cause))
}
