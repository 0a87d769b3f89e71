package authz

import (
	"net/netip"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Input is everything a Check reads from Envoy's CheckRequest, and nothing
// more. The server fills it from the generated message (readInput); a
// decoder that reads the wire format directly can fill it without building
// the message. Keeping the fields in one place is what lets the two agree:
// a new field is added here, to readInput and to the wire decoder.
//
// Strings may alias a buffer that lives only for the Check: nothing may
// keep them beyond it (identity.ID copies what it keeps).
type Input struct {
	// Source is the downstream socket address Envoy saw
	// (attributes.source.address), unmapped and without zone; invalid when
	// absent or unparsable. SourcePort is its port, 0 when absent.
	Source     netip.Addr
	SourcePort uint32

	// Path is the request path (attributes.request.http.path, or the
	// :path header); Method and Host are the method and authority.
	Path   string
	Method string
	Host   string

	// Time is attributes.request.time; zero when absent or invalid.
	Time time.Time

	// Header values, the last one when repeated (see header).
	ForwardedFor  string // x-forwarded-for
	IdentityValue string // the --identity-header, "" when none is configured
	UserAgent     string // user-agent

	// Strip lists the x-flowlock-* headers the client sent (other than
	// x-flowlock-risk, which the allow answer overwrites): the upstream
	// must be able to trust every x-flowlock-* header, so they are removed.
	Strip []string
}

// readInput fills in from req, as Check needs it; want names the headers
// it reads (see headerTable).
func readInput(req *authv3.CheckRequest, want headerTable, in *Input) {
	attrs := req.GetAttributes()
	http := attrs.GetRequest().GetHttp()
	sock := attrs.GetSource().GetAddress().GetSocketAddress()
	in.Source = sourceAddr(attrs.GetSource().GetAddress())
	in.SourcePort = sock.GetPortValue()
	in.Path = http.GetPath()
	if in.Path == "" {
		in.Path = header(http, ":path")
	}
	in.Method = http.GetMethod()
	in.Host = http.GetHost()
	if ts := attrs.GetRequest().GetTime(); ts != nil && ts.IsValid() {
		in.Time = ts.AsTime()
	}
	for _, h := range want {
		*in.header(h.field) = header(http, h.name)
	}
	for k := range http.GetHeaders() {
		if k != riskHeader && hasPrefixFold(k, headerPrefix) {
			in.Strip = append(in.Strip, k)
		}
	}
	for _, h := range http.GetHeaderMap().GetHeaders() {
		if k := h.GetKey(); k != riskHeader && hasPrefixFold(k, headerPrefix) {
			in.Strip = append(in.Strip, k)
		}
	}
}

// sourceAddr reads the socket address Envoy saw, or the zero Addr.
func sourceAddr(a *corev3.Address) netip.Addr {
	return sourceIP(a.GetSocketAddress().GetAddress())
}

// sourceIP parses a socket address, unmapped and without zone, or returns
// the zero Addr.
func sourceIP(s string) netip.Addr {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap().WithZone("")
}

// header returns a request header by lowercase name. Envoy sends headers in
// the headers map, or, with encode_raw_headers, in header_map; for repeated
// raw headers the last one wins (the one the nearest proxy wrote).
func header(http *authv3.AttributeContext_HttpRequest, name string) string {
	if v, ok := http.GetHeaders()[name]; ok {
		return v
	}
	hm := http.GetHeaderMap().GetHeaders()
	for i := len(hm) - 1; i >= 0; i-- {
		if hm[i].GetKey() == name {
			if v := hm[i].GetValue(); v != "" {
				return v
			}
			return string(hm[i].GetRawValue())
		}
	}
	return ""
}

// headerTable names the request headers a Check reads and the Input field
// each fills. NewServer builds it once from the configuration; both
// readInput and the wire decoder read exactly these, so a new header is a
// row in newHeaderTable (and, for a new field, a case in Input.header). A
// name may appear twice (--identity-header user-agent): each row gets the
// value.
type headerTable []wantedHeader

type wantedHeader struct {
	name  string // lowercase, as Envoy sends names
	field headerField
}

// headerField names an Input field that holds a header value. It is a
// number rather than a func(*Input) *string, which would make every Input
// escape to the heap.
type headerField uint8

const (
	forwardedForField headerField = iota
	userAgentField
	identityField
)

// header returns the field f of in.
func (in *Input) header(f headerField) *string {
	switch f {
	case forwardedForField:
		return &in.ForwardedFor
	case userAgentField:
		return &in.UserAgent
	case identityField:
		return &in.IdentityValue
	}
	panic("authz: unknown header field")
}

// maxWantedHeaders bounds the table so the wire decoder keeps its state in
// a fixed array; rows come from code, not from input.
const maxWantedHeaders = 8

func newHeaderTable(identityHeader string) headerTable {
	t := headerTable{
		{"x-forwarded-for", forwardedForField},
		{"user-agent", userAgentField},
	}
	if identityHeader != "" {
		t = append(t, wantedHeader{identityHeader, identityField})
	}
	if len(t) > maxWantedHeaders {
		panic("authz: more wanted headers than maxWantedHeaders")
	}
	return t
}
