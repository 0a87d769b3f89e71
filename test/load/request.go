package load

import (
	"fmt"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Addresses returns n distinct client addresses 10.a.b.c, the kind an
// Istio sidecar reports for pods. They are only ever written into
// CheckRequests as the client's address; every connection the harness opens
// goes to loopback. n is at most 1<<24.
func Addresses(n int) []string {
	out := make([]string, n)
	for i := range out {
		v := i + 1 // 10.0.0.1 first
		out[i] = fmt.Sprintf("10.%d.%d.%d", v>>16&255, v>>8&255, v&255)
	}
	return out
}

// request is one reusable CheckRequest shaped like the captures in
// /work/shared/envoy-checkrequests (an Envoy gateway's, kgateway): source
// socket address and port, destination, request time, and the HTTP request
// with its pseudo-headers, user agent, X-Forwarded-For when set, and the
// request id Envoy adds. A worker owns one and changes only the client
// address and the time before each send: gRPC encodes the message before
// Invoke returns, so reusing it is safe and keeps the generator cheap.
type request struct {
	msg    *authv3.CheckRequest
	sock   *corev3.SocketAddress
	ts     *timestamppb.Timestamp
	header map[string]string
	xff    bool
}

// newRequest returns a request; worker numbers the request ids so that
// workers' messages differ as Envoy's do.
func newRequest(worker int, xff bool) *request {
	r := &request{
		sock: &corev3.SocketAddress{Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(40000 + worker%20000)}},
		ts:   timestamppb.Now(),
		header: map[string]string{
			":authority":            "api.example.com",
			":method":               "GET",
			":path":                 "/v1/items?page=2",
			":scheme":               "https",
			"accept":                "application/json",
			"user-agent":            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
			"x-envoy-attempt-count": "1",
			"x-forwarded-proto":     "https",
			"x-request-id":          "8fc7e284-7c09-4080-9500-" + fmt.Sprintf("%012x", worker),
		},
		xff: xff,
	}
	if xff {
		r.header["x-forwarded-for"] = r.sock.Address
	}
	r.msg = &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: r.sock}}},
		Destination: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "10.96.0.10", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080},
		}}}},
		Request: &authv3.AttributeContext_Request{
			Time: r.ts,
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       strconv.Itoa(2185898822670104560 + worker),
				Method:   "GET",
				Headers:  r.header,
				Path:     "/v1/items?page=2",
				Host:     "api.example.com",
				Scheme:   "https",
				Protocol: "HTTP/1.1",
			},
		},
	}}
	return r
}

// set makes the request come from client at time at.
func (r *request) set(client string, at time.Time) {
	r.sock.Address = client
	if r.xff {
		r.header["x-forwarded-for"] = client
	}
	r.ts.Seconds, r.ts.Nanos = at.Unix(), int32(at.Nanosecond())
}
