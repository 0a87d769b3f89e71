package load

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
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

// Field numbers of the CheckRequest parts a request writes per send
// (envoy/service/auth/v3/attribute_context.proto and its imports).
const (
	fieldAttributes  protowire.Number = 1 // CheckRequest.attributes
	fieldSource      protowire.Number = 1 // AttributeContext.source
	fieldDestination protowire.Number = 2 // AttributeContext.destination
	fieldRequest     protowire.Number = 4 // AttributeContext.request
	fieldPeerAddress protowire.Number = 1 // Peer.address
	fieldSocket      protowire.Number = 1 // Address.socket_address
	fieldSockAddress protowire.Number = 2 // SocketAddress.address
	fieldSockPort    protowire.Number = 3 // SocketAddress.port_value
	fieldTime        protowire.Number = 1 // Request.time
	fieldHTTP        protowire.Number = 2 // Request.http
	fieldHeaders     protowire.Number = 3 // HttpRequest.headers (map entries)
	fieldSeconds     protowire.Number = 1 // Timestamp.seconds
	fieldNanos       protowire.Number = 2 // Timestamp.nanos
	fieldMapKey      protowire.Number = 1
	fieldMapValue    protowire.Number = 2
)

// request is one worker's CheckRequest, shaped like the captures in
// /work/shared/envoy-checkrequests (an Envoy gateway's, kgateway): source
// socket address and port, destination, request time, and the HTTP request
// with its pseudo-headers, user agent, X-Forwarded-For when set, and the
// request id Envoy adds.
//
// The generator must cost less than the servers it measures, or it sets
// the pace and every ratio compresses toward 1 (Envoy, written in C++,
// does not pay Go's protobuf either). So a request is encoded once, and
// per send only the parts that change (source address, X-Forwarded-For,
// time) are written around those bytes with protowire: protobuf lets a
// map entry come after the others, and TestRequestEncoding checks the
// bytes decode to exactly the message newMessage builds.
type request struct {
	port      uint32
	xff       bool
	dest      []byte // AttributeContext.destination, tagged
	http      []byte // HttpRequest without X-Forwarded-For
	out       []byte // the encoded CheckRequest, rewritten by set
	sock, reg []byte // scratch: the source peer, the Request
}

// newRequest returns a request; worker numbers the request ids and ports
// so that workers' messages differ as Envoy's do.
func newRequest(worker int, xff bool) *request {
	m := newMessage(worker, "10.0.0.1", time.Now(), false)
	a := m.GetAttributes()
	dest, err := proto.Marshal(a.GetDestination())
	if err != nil {
		panic(err) // a fixed message: cannot fail
	}
	http, err := proto.Marshal(a.GetRequest().GetHttp())
	if err != nil {
		panic(err)
	}
	return &request{
		port: a.GetSource().GetAddress().GetSocketAddress().GetPortValue(),
		xff:  xff,
		dest: appendMessage(nil, fieldDestination, dest),
		http: http,
	}
}

// newMessage is the CheckRequest a request encodes, built the ordinary
// way: the reference the encoding is tested against.
func newMessage(worker int, client string, at time.Time, xff bool) *authv3.CheckRequest {
	header := map[string]string{
		":authority":            "api.example.com",
		":method":               "GET",
		":path":                 "/v1/items?page=2",
		":scheme":               "https",
		"accept":                "application/json",
		"user-agent":            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		"x-envoy-attempt-count": "1",
		"x-forwarded-proto":     "https",
		"x-request-id":          "8fc7e284-7c09-4080-9500-" + fmt.Sprintf("%012x", worker),
	}
	if xff {
		header["x-forwarded-for"] = client
	}
	sock := &corev3.SocketAddress{Address: client, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(40000 + worker%20000)}}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: sock}}},
		Destination: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "10.96.0.10", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080},
		}}}},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(at),
			Http: &authv3.AttributeContext_HttpRequest{
				Id:       strconv.Itoa(2185898822670104560 + worker),
				Method:   "GET",
				Headers:  header,
				Path:     "/v1/items?page=2",
				Host:     "api.example.com",
				Scheme:   "https",
				Protocol: "HTTP/1.1",
			},
		},
	}}
}

// set encodes the request as coming from client at time at, and returns
// the bytes, valid until the next set.
func (r *request) set(client string, at time.Time) []byte {
	// Source peer: Peer{address: Address{socket_address: {address, port}}}.
	s := protowire.AppendTag(r.sock[:0], fieldSockAddress, protowire.BytesType)
	s = protowire.AppendString(s, client)
	s = protowire.AppendTag(s, fieldSockPort, protowire.VarintType)
	s = protowire.AppendVarint(s, uint64(r.port))
	n := len(s)
	s = appendMessage(s, fieldSocket, s[:n]) // Address
	m := len(s)
	s = appendMessage(s, fieldPeerAddress, s[n:m]) // Peer
	r.sock = s
	peer := s[m:]

	// Request{time, http}, X-Forwarded-For appended to the headers.
	q := protowire.AppendTag(r.reg[:0], fieldSeconds, protowire.VarintType)
	q = protowire.AppendVarint(q, uint64(at.Unix()))
	q = protowire.AppendTag(q, fieldNanos, protowire.VarintType)
	q = protowire.AppendVarint(q, uint64(at.Nanosecond()))
	ts := len(q)
	q = appendMessage(q, fieldTime, q[:ts])
	httpLen := len(r.http)
	entry := 0
	if r.xff {
		entry = protowire.SizeTag(fieldMapKey) + protowire.SizeBytes(len("x-forwarded-for")) +
			protowire.SizeTag(fieldMapValue) + protowire.SizeBytes(len(client))
		httpLen += sizeMessage(fieldHeaders, entry)
	}
	q = protowire.AppendTag(q, fieldHTTP, protowire.BytesType)
	q = protowire.AppendVarint(q, uint64(httpLen))
	q = append(q, r.http...)
	if r.xff {
		q = protowire.AppendTag(q, fieldHeaders, protowire.BytesType)
		q = protowire.AppendVarint(q, uint64(entry))
		q = protowire.AppendTag(q, fieldMapKey, protowire.BytesType)
		q = protowire.AppendString(q, "x-forwarded-for")
		q = protowire.AppendTag(q, fieldMapValue, protowire.BytesType)
		q = protowire.AppendString(q, client)
	}
	r.reg = q
	req := q[ts:]

	// CheckRequest{attributes: {source, destination, request}}.
	attrs := sizeMessage(fieldSource, len(peer)) + len(r.dest) + sizeMessage(fieldRequest, len(req))
	o := protowire.AppendTag(r.out[:0], fieldAttributes, protowire.BytesType)
	o = protowire.AppendVarint(o, uint64(attrs))
	o = appendMessage(o, fieldSource, peer)
	o = append(o, r.dest...)
	o = appendMessage(o, fieldRequest, req)
	r.out = o
	return o
}

// appendMessage appends field num holding the encoded message b. b may be
// a part of dst below len(dst): append never writes there.
func appendMessage(dst []byte, num protowire.Number, b []byte) []byte {
	dst = protowire.AppendTag(dst, num, protowire.BytesType)
	return protowire.AppendBytes(dst, b)
}

// sizeMessage is the encoded size of field num holding a message of n bytes.
func sizeMessage(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// Field numbers of the CheckResponse parts an answer is read from.
const (
	fieldStatus     protowire.Number = 1 // CheckResponse.status (google.rpc.Status)
	fieldDenied     protowire.Number = 2 // CheckResponse.denied_response
	fieldStatusCode protowire.Number = 1 // Status.code, DeniedHttpResponse.status, HttpStatus.code
)

// answer is what a CheckResponse says, read without decoding the rest.
type answer struct {
	code   int32 // google.rpc.Status code: 0 allows
	denied int32 // the denied response's HTTP status, or 0
}

var errAnswer = errors.New("malformed CheckResponse")

// readAnswer reads a CheckResponse's status code and, when it denies, its
// HTTP status. Later fields win, as in protobuf.
func readAnswer(b []byte) (answer, error) {
	var a answer
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return a, errAnswer
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldStatus || num == fieldDenied) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return a, errAnswer
			}
			b = b[n:]
			var err error
			if num == fieldStatus {
				a.code, err = varintField(v, fieldStatusCode)
			} else {
				var st []byte
				if st, err = bytesField(v, fieldStatusCode); err == nil {
					a.denied, err = varintField(st, fieldStatusCode)
				}
			}
			if err != nil {
				return a, err
			}
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return a, errAnswer
		}
		b = b[n:]
	}
	return a, nil
}

// varintField returns the last value of varint field num in message b.
func varintField(b []byte, num protowire.Number) (int32, error) {
	var v int32
	for len(b) > 0 {
		f, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, errAnswer
		}
		b = b[n:]
		if f == num && typ == protowire.VarintType {
			x, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, errAnswer
			}
			v, b = int32(x), b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(f, typ, b); n < 0 {
			return 0, errAnswer
		}
		b = b[n:]
	}
	return v, nil
}

// bytesField returns the last value of bytes field num in message b.
func bytesField(b []byte, num protowire.Number) ([]byte, error) {
	var v []byte
	for len(b) > 0 {
		f, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, errAnswer
		}
		b = b[n:]
		if f == num && typ == protowire.BytesType {
			x, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, errAnswer
			}
			v, b = x, b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(f, typ, b); n < 0 {
			return nil, errAnswer
		}
		b = b[n:]
	}
	return v, nil
}
