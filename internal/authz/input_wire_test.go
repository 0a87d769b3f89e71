package authz

import (
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The configuration the wire tests decode under: an identity header, and a
// claim from the JWT filter's metadata.
var (
	wireTestHeaders = newHeaderTable(&ClientRules{IdentityHeader: "x-user-id", FingerprintHeader: "x-ja4"})
	wireTestClaim   = &claimPath{namespace: "envoy.filters.http.jwt_authn", path: []string{"payload", "sub"}}
)

// wireAgrees decodes b with the wire decoder and with proto.Unmarshal plus
// readInput, and fails t unless they agree: on every input proto accepts,
// the wire decoder accepts it too and fills the same Input. It reports
// whether proto accepted b. On input proto refuses the wire decoder may do
// either (see the shortcuts in input_wire.go), but must not panic.
func wireAgrees(t testing.TB, b []byte) bool {
	t.Helper()
	var d wireDecoder
	wireErr := d.decode(b, wireTestHeaders, wireTestClaim)
	var req authv3.CheckRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		return false
	}
	if wireErr != nil {
		t.Fatalf("proto accepted %x, the wire decoder refused it: %v", b, wireErr)
	}
	var want Input
	readInput(&req, wireTestHeaders, nil, &want)
	got := d.in
	if got.Source != want.Source || got.SourcePort != want.SourcePort || got.Path != want.Path ||
		got.Method != want.Method || got.Host != want.Host || !got.Time.Equal(want.Time) ||
		got.ForwardedFor != want.ForwardedFor || got.IdentityValue != want.IdentityValue ||
		got.UserAgent != want.UserAgent || got.Fingerprint != want.Fingerprint || !sameNames(got.Strip, want.Strip) {
		t.Fatalf("decoding %x:\nwire  %+v\nproto %+v", b, got, want)
	}
	if c := claimFromMessage(req.GetAttributes().GetMetadataContext(), wireTestClaim); d.in.Claim != c {
		t.Fatalf("decoding %x: wire claim %q, proto claim %q", b, d.in.Claim, c)
	}
	return true
}

// sameNames compares header names as multisets: Envoy removes them in any
// order, and readInput lists the headers map's in map order.
func sameNames(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// claimFromMessage is claimFromMetadata, the generated path's claim, in
// the wire tests' terms: the reference the wire walk is fuzzed against.
func claimFromMessage(md *corev3.Metadata, c *claimPath) string {
	return claimFromMetadata(md, c.namespace, c.path)
}

// envoyFixtures returns every captured CheckRequest in testdata/envoy that
// loads, marshalled.
func envoyFixtures(t testing.TB) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob(filepath.Join("testdata", "envoy", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, name := range names {
		switch filepath.Base(name) {
		case "authorino-observability-apikey-invalid.json", "opa-envoy-plugin-istio-example-input.json":
			continue // not CheckRequests (testdata/envoy/README.md)
		}
		b, err := proto.Marshal(loadFixture(t, filepath.Base(name)))
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(name)] = b
	}
	if len(out) < 5 {
		t.Fatalf("only %d Envoy fixtures load", len(out))
	}
	return out
}

// richRequest is a CheckRequest with every field Input reads set, in both
// header encodings, with x-flowlock-* headers and a claim.
func richRequest() *authv3.CheckRequest {
	req := request("2001:db8::7", map[string]string{
		"x-forwarded-for": "198.51.100.1, 10.0.0.1", "user-agent": "curl/8", "x-user-id": "alice",
		"x-flowlock-route": "admin", riskHeader: "0",
	})
	req.Attributes.Source.Address.GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 443}
	req.Attributes.Request.Time = timestamppb.New(timestamppb.Now().AsTime())
	req.Attributes.Request.Http.Host = "api.example"
	req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "x-user-id", Value: "bob"}, {Key: "X-Flowlock-Raw", RawValue: []byte("1")}, {Key: "user-agent", RawValue: []byte("raw/1")},
	}}
	sub, _ := structpb.NewStruct(map[string]any{"payload": map[string]any{"sub": "user-7", "n": 12}})
	req.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{wireTestClaim.namespace: sub}}
	return req
}

func TestWireDecoderMatchesEnvoyFixtures(t *testing.T) {
	fixtures := envoyFixtures(t)
	fixtures["rich"], _ = proto.Marshal(richRequest())
	for name, b := range fixtures {
		t.Run(name, func(t *testing.T) {
			if !wireAgrees(t, b) {
				t.Fatal("proto refused the fixture")
			}
		})
	}
	var d wireDecoder
	if err := d.decode(fixtures["istio-authz-custom-allowed.json"], wireTestHeaders, nil); err != nil ||
		d.in.Source.String() != "10.44.0.22" || d.in.Path != "/headers" || d.in.UserAgent != "curl/7.74.0-DEV" {
		t.Errorf("Istio fixture decoded as %+v, %v", d.in, err)
	}
	if err := d.decode(fixtures["rich"], wireTestHeaders, wireTestClaim); err != nil || d.in.Claim != "user-7" ||
		d.in.IdentityValue != "alice" || len(d.in.Strip) != 2 {
		t.Errorf("rich request decoded as %+v, claim %q, %v", d.in, d.in.Claim, err)
	}
}

// Wire-format building blocks for hand-made requests.
func wStr(num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}

func wMsg(num protowire.Number, fields ...[]byte) []byte {
	return wStr(num, string(slices.Concat(fields...)))
}

func wVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

// wHTTP wraps HttpRequest fields into a CheckRequest.
func wHTTP(fields ...[]byte) []byte {
	return wMsg(fieldCheckAttributes, wMsg(fieldAttrRequest, wMsg(fieldRequestHTTP, fields...)))
}

func wHeader(k, v string) []byte { return wMsg(fieldHTTPHeaders, wStr(1, k), wStr(2, v)) }

func wRaw(k, v, raw string) []byte {
	return wMsg(fieldHTTPHeaderMap, wMsg(fieldHeaderMapHeaders, wStr(1, k), wStr(2, v), wStr(3, raw)))
}

func wSource(fields ...[]byte) []byte {
	return wMsg(fieldCheckAttributes, wMsg(fieldAttrSource, wMsg(fieldPeerAddress, fields...)))
}

// TestWireDecoderProtobufRules: the rules a one-pass decoder could get
// wrong, each checked against the generated decoder and for its value.
func TestWireDecoderProtobufRules(t *testing.T) {
	tests := []struct {
		name  string
		b     []byte
		check func(Input) bool
	}{
		{"repeated map key: last wins", wHTTP(wHeader("user-agent", "a"), wHeader("user-agent", "b")),
			func(in Input) bool { return in.UserAgent == "b" }},
		{"the map wins over header_map", wHTTP(wRaw("user-agent", "raw", ""), wHeader("user-agent", "map")),
			func(in Input) bool { return in.UserAgent == "map" }},
		{"header_map: last wins, raw_value when value is empty", wHTTP(wRaw("x-user-id", "a", ""), wRaw("x-user-id", "", "b")),
			func(in Input) bool { return in.IdentityValue == "b" }},
		{"header_map: the last one, even empty", wHTTP(wRaw("x-user-id", "a", ""), wRaw("x-user-id", "", "")),
			func(in Input) bool { return in.IdentityValue == "" }},
		{"names are case sensitive", wHTTP(wHeader("User-Agent", "a")), func(in Input) bool { return in.UserAgent == "" }},
		{":path when path is empty", wHTTP(wHeader(":path", "/p")), func(in Input) bool { return in.Path == "/p" }},
		{"path over :path", wHTTP(wHeader(":path", "/p"), wStr(fieldHTTPPath, "/q")), func(in Input) bool { return in.Path == "/q" }},
		{"a message seen twice merges", slices.Concat(wHTTP(wStr(fieldHTTPMethod, "GET")), wHTTP(wStr(fieldHTTPPath, "/x"))),
			func(in Input) bool { return in.Method == "GET" && in.Path == "/x" }},
		{"a string seen twice: last wins", wHTTP(wStr(fieldHTTPHost, "a"), wStr(fieldHTTPHost, "b")),
			func(in Input) bool { return in.Host == "b" }},
		{"address and port merge", slices.Concat(
			wSource(wMsg(fieldAddressSocket, wStr(fieldSocketAddress, "10.0.0.1"))),
			wSource(wMsg(fieldAddressSocket, wVarint(fieldSocketPortValue, 80)))),
			func(in Input) bool { return in.Source.String() == "10.0.0.1" && in.SourcePort == 80 }},
		{"a pipe replaces the socket address", wSource(
			wMsg(fieldAddressSocket, wStr(fieldSocketAddress, "10.0.0.1"), wVarint(fieldSocketPortValue, 80)),
			wMsg(fieldAddressPipe, wStr(1, "/tmp/s"))),
			func(in Input) bool { return !in.Source.IsValid() && in.SourcePort == 0 }},
		{"named_port replaces port_value", wSource(wMsg(fieldAddressSocket, wVarint(fieldSocketPortValue, 80), wStr(fieldSocketNamedPort, "http"))),
			func(in Input) bool { return in.SourcePort == 0 }},
		{"port_value wider than 32 bits is truncated", wSource(wMsg(fieldAddressSocket, wVarint(fieldSocketPortValue, 1<<32+7))),
			func(in Input) bool { return in.SourcePort == 7 }},
		{"a mapped IPv4 source is unmapped", wSource(wMsg(fieldAddressSocket, wStr(fieldSocketAddress, "::ffff:192.0.2.1"))),
			func(in Input) bool { return in.Source.String() == "192.0.2.1" }},
		{"wrong wire type: an unknown field", wHTTP(wVarint(fieldHTTPPath, 3), wStr(fieldHTTPMethod, "PUT")),
			func(in Input) bool { return in.Path == "" && in.Method == "PUT" }},
		{"unknown fields are skipped", slices.Concat(wVarint(99, 1), wHTTP(wMsg(77, wStr(1, "x")), wStr(fieldHTTPPath, "/k")),
			protowire.AppendFixed32(protowire.AppendTag(nil, 5, protowire.Fixed32Type), 1)),
			func(in Input) bool { return in.Path == "/k" }},
		{"a group is skipped whole", slices.Concat(protowire.AppendTag(nil, 50, protowire.StartGroupType), wStr(fieldCheckAttributes, "junk"),
			protowire.AppendTag(nil, 50, protowire.EndGroupType), wHTTP(wStr(fieldHTTPPath, "/g"))),
			func(in Input) bool { return in.Path == "/g" }},
		{"an empty time is the epoch", wMsg(fieldCheckAttributes, wMsg(fieldAttrRequest, wMsg(fieldRequestTime))),
			func(in Input) bool { return in.Time.Unix() == 0 && !in.Time.IsZero() }},
		{"an invalid time is none", wMsg(fieldCheckAttributes, wMsg(fieldAttrRequest, wMsg(fieldRequestTime, wVarint(fieldTimeNanos, 1e9)))),
			func(in Input) bool { return in.Time.IsZero() }},
		{"x-flowlock-* listed once per map name, every time in header_map", wHTTP(
			wHeader("x-flowlock-a", "1"), wHeader("x-flowlock-a", "2"), wHeader(riskHeader, "9"),
			wRaw("x-flowlock-a", "1", ""), wRaw("X-FLOWLOCK-B", "", ""), wRaw("X-FLOWLOCK-B", "", "")),
			func(in Input) bool {
				return sameNames(in.Strip, []string{"x-flowlock-a", "x-flowlock-a", "X-FLOWLOCK-B", "X-FLOWLOCK-B"})
			}},
		{"raw_value may be any bytes", wHTTP(wRaw("user-agent", "", "\xff\xfe")),
			func(in Input) bool { return in.UserAgent == "\xff\xfe" }},
		{"empty", nil, func(in Input) bool {
			return !in.Source.IsValid() && in.Path == "" && in.Time.IsZero() && in.UserAgent == "" && len(in.Strip) == 0
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !wireAgrees(t, tc.b) {
				t.Fatalf("proto refused %x", tc.b)
			}
			var d wireDecoder
			if err := d.decode(tc.b, wireTestHeaders, nil); err != nil || !tc.check(d.in) {
				t.Errorf("decoded %+v, %v", d.in, err)
			}
		})
	}
}

// TestWireDecoderRefuses: malformed requests are errors, never a guess.
func TestWireDecoderRefuses(t *testing.T) {
	good, _ := proto.Marshal(richRequest())
	tests := map[string][]byte{
		"truncated":                 good[:len(good)-3],
		"length beyond the end":     append(protowire.AppendTag(nil, fieldCheckAttributes, protowire.BytesType), 0x7f, 1),
		"truncated varint":          {0x08, 0x80},
		"field number 0":            {0x02, 0x00},
		"stray end group":           protowire.AppendTag(nil, 3, protowire.EndGroupType),
		"reserved wire type":        {0x0e},
		"unterminated group":        protowire.AppendTag(nil, 3, protowire.StartGroupType),
		"invalid UTF-8 in a path":   wHTTP(wStr(fieldHTTPPath, "/\xff")),
		"invalid UTF-8 in a header": wHTTP(wHeader("user-agent", "\xc3")),
		"invalid UTF-8 in a name":   wHTTP(wHeader("x-flowlock-\xff", "1")),
		"invalid UTF-8 in an addr":  wSource(wMsg(fieldAddressSocket, wStr(fieldSocketAddress, "\xff"))),
		"malformed nested header":   wHTTP(wMsg(fieldHTTPHeaders, []byte{0x0a, 0x09})),
		"invalid UTF-8 in a claim":  wMsg(fieldCheckAttributes, wMsg(fieldAttrMetadata, wMsg(1, wStr(1, wireTestClaim.namespace), wMsg(2, wMsg(1, wStr(1, "payload"), wMsg(2, wMsg(fieldValueStruct, wMsg(1, wStr(1, "sub"), wMsg(2, wStr(fieldValueString, "\xff")))))))))),
		"malformed metadata struct": wMsg(fieldCheckAttributes, wMsg(fieldAttrMetadata, wMsg(1, wStr(1, wireTestClaim.namespace), wMsg(2, []byte{0x0a, 0x05})))),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			var d wireDecoder
			if err := d.decode(b, wireTestHeaders, wireTestClaim); err == nil {
				t.Errorf("decoded %x without an error: %+v", b, d.in)
			}
			if proto.Unmarshal(b, &authv3.CheckRequest{}) == nil {
				t.Errorf("proto accepts %x: not a malformed request", b)
			}
		})
	}
}

// TestWireFieldNumbers checks the decoder's field numbers against the
// generated descriptors, so a typo cannot hide behind "unknown field".
func TestWireFieldNumbers(t *testing.T) {
	fields := func(m proto.Message) protoreflect.FieldDescriptors {
		return m.ProtoReflect().Descriptor().Fields()
	}
	for _, c := range []struct {
		msg  proto.Message
		name protoreflect.Name
		num  protowire.Number
	}{
		{&authv3.CheckRequest{}, "attributes", fieldCheckAttributes},
		{&authv3.AttributeContext{}, "source", fieldAttrSource},
		{&authv3.AttributeContext{}, "request", fieldAttrRequest},
		{&authv3.AttributeContext{}, "metadata_context", fieldAttrMetadata},
		{&authv3.AttributeContext_Peer{}, "address", fieldPeerAddress},
		{&corev3.Address{}, "socket_address", fieldAddressSocket},
		{&corev3.Address{}, "pipe", fieldAddressPipe},
		{&corev3.Address{}, "envoy_internal_address", fieldAddressInternal},
		{&corev3.SocketAddress{}, "address", fieldSocketAddress},
		{&corev3.SocketAddress{}, "port_value", fieldSocketPortValue},
		{&corev3.SocketAddress{}, "named_port", fieldSocketNamedPort},
		{&authv3.AttributeContext_Request{}, "time", fieldRequestTime},
		{&authv3.AttributeContext_Request{}, "http", fieldRequestHTTP},
		{&timestamppb.Timestamp{}, "seconds", fieldTimeSeconds},
		{&timestamppb.Timestamp{}, "nanos", fieldTimeNanos},
		{&authv3.AttributeContext_HttpRequest{}, "method", fieldHTTPMethod},
		{&authv3.AttributeContext_HttpRequest{}, "headers", fieldHTTPHeaders},
		{&authv3.AttributeContext_HttpRequest{}, "path", fieldHTTPPath},
		{&authv3.AttributeContext_HttpRequest{}, "host", fieldHTTPHost},
		{&authv3.AttributeContext_HttpRequest{}, "header_map", fieldHTTPHeaderMap},
		{&corev3.HeaderMap{}, "headers", fieldHeaderMapHeaders},
		{&corev3.HeaderValue{}, "key", fieldHeaderKey},
		{&corev3.HeaderValue{}, "value", fieldHeaderValue},
		{&corev3.HeaderValue{}, "raw_value", fieldHeaderRawValue},
		{&corev3.Metadata{}, "filter_metadata", fieldMetadataFilter},
		{&structpb.Struct{}, "fields", fieldStructFields},
		{&structpb.Value{}, "null_value", fieldValueNull},
		{&structpb.Value{}, "number_value", fieldValueNumber},
		{&structpb.Value{}, "string_value", fieldValueString},
		{&structpb.Value{}, "bool_value", fieldValueBool},
		{&structpb.Value{}, "struct_value", fieldValueStruct},
		{&structpb.Value{}, "list_value", fieldValueList},
	} {
		fd := fields(c.msg).ByName(c.name)
		if fd == nil || fd.Number() != c.num {
			t.Errorf("%s.%s: decoder uses %d, descriptor %v", c.msg.ProtoReflect().Descriptor().FullName(), c.name, c.num, fd)
		}
	}
	entry := fields(&authv3.AttributeContext_HttpRequest{}).ByName("headers").Message().Fields()
	if entry.ByName("key").Number() != fieldMapKey || entry.ByName("value").Number() != fieldMapValue {
		t.Error("map entry field numbers")
	}
}

// TestClaimFromWire walks the JWT filter's metadata as the generated
// Struct reads it: nested claims, kinds, a namespace or name sent twice,
// a struct_value sent twice (merged) or replaced by another kind.
func TestClaimFromWire(t *testing.T) {
	ns := wireTestClaim.namespace
	entry := func(k string, v []byte) []byte { return wMsg(1, wStr(1, k), wMsg(2, v)) } // a map entry, field 1
	str := func(s string) []byte { return wStr(fieldValueString, s) }
	obj := func(entries ...[]byte) []byte { return wMsg(fieldValueStruct, entries...) }
	num := func(f float64) []byte {
		return protowire.AppendFixed64(protowire.AppendTag(nil, fieldValueNumber, protowire.Fixed64Type), math.Float64bits(f))
	}
	tests := []struct {
		name string
		md   []byte
		path []string
		want string
	}{
		{"nested string", entry(ns, entry("payload", obj(entry("sub", str("u1"))))), []string{"payload", "sub"}, "u1"},
		{"top-level", entry(ns, entry("iss", str("idp"))), []string{"iss"}, "idp"},
		{"integer", entry(ns, entry("uid", num(1234567))), []string{"uid"}, "1234567"},
		{"fraction", entry(ns, entry("uid", num(1.5))), []string{"uid"}, ""},
		{"negative", entry(ns, entry("uid", num(-42))), []string{"uid"}, "-42"},
		{"huge", entry(ns, entry("uid", num(1e300))), []string{"uid"}, ""},
		{"bool", entry(ns, entry("admin", wVarint(fieldValueBool, 1))), []string{"admin"}, ""},
		{"a struct is no claim", entry(ns, entry("payload", obj())), []string{"payload"}, ""},
		{"missing name", entry(ns, entry("payload", obj(entry("sub", str("u1"))))), []string{"payload", "aud"}, ""},
		{"other namespace", entry("other", entry("iss", str("idp"))), []string{"iss"}, ""},
		{"namespace twice: the last replaces", slices.Concat(entry(ns, entry("iss", str("a"))), entry(ns, entry("aud", str("b")))), []string{"iss"}, ""},
		{"name twice: the last wins", entry(ns, slices.Concat(entry("iss", str("a")), entry("iss", str("b")))), []string{"iss"}, "b"},
		{"struct_value twice merges", entry(ns, entry("payload", slices.Concat(obj(entry("sub", str("u1"))), obj(entry("aud", str("x")))))), []string{"payload", "sub"}, "u1"},
		{"a string replaces a struct", entry(ns, entry("payload", slices.Concat(obj(entry("sub", str("u1"))), str("s")))), []string{"payload", "sub"}, ""},
		{"a struct after a string starts fresh", entry(ns, entry("payload", slices.Concat(obj(entry("sub", str("u1"))), str("s"), obj()))), []string{"payload", "sub"}, ""},
		{"a kind replaced: the last wins", entry(ns, entry("iss", slices.Concat(str("a"), num(2)))), []string{"iss"}, "2"},
		{"null", entry(ns, entry("iss", wVarint(fieldValueNull, 0))), []string{"iss"}, ""},
		{"no path", entry(ns, entry("iss", str("a"))), nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := claimFromWire(tc.md, ns, tc.path); got != tc.want {
				t.Errorf("claimFromWire = %q, want %q", got, tc.want)
			}
			var md corev3.Metadata
			if err := proto.Unmarshal(tc.md, &md); err != nil {
				t.Fatalf("proto refuses the test's metadata: %v", err)
			}
			if ref := claimFromMessage(&md, &claimPath{namespace: ns, path: tc.path}); ref != tc.want {
				t.Errorf("the generated Struct reads %q, the test wants %q", ref, tc.want)
			}
		})
	}
}

// FuzzWireDecoder: on every input proto.Unmarshal accepts, the wire decoder
// fills the same Input as readInput on the generated message (and reads
// the same claim); on any input, it does not panic. Seeds are the captured
// Envoy requests (testdata/envoy) and one with every field Input reads.
func FuzzWireDecoder(f *testing.F) {
	for _, b := range envoyFixtures(f) {
		f.Add(b)
	}
	rich, _ := proto.Marshal(richRequest())
	f.Add(rich)
	f.Add(slices.Concat(wHTTP(wHeader("user-agent", "a"), wRaw("x-user-id", "", "b")), wSource(wMsg(fieldAddressPipe))))
	f.Fuzz(func(t *testing.T, b []byte) {
		wireAgrees(t, b)
	})
}

// FuzzClaimFromWire: claimFromWire reads what the generated Struct holds,
// for any metadata proto accepts.
func FuzzClaimFromWire(f *testing.F) {
	req := richRequest()
	md, _ := proto.Marshal(req.Attributes.MetadataContext)
	f.Add(md, "payload", "sub")
	f.Add(md, "payload", "n")
	f.Fuzz(func(t *testing.T, b []byte, a, c string) {
		path := []string{a}
		if c != "" {
			path = append(path, strings.Split(c, ".")...)
		}
		got := claimFromWire(b, wireTestClaim.namespace, path)
		var m corev3.Metadata
		if proto.Unmarshal(b, &m) != nil {
			return
		}
		if want := claimFromMessage(&m, &claimPath{namespace: wireTestClaim.namespace, path: path}); got != want {
			t.Fatalf("claimFromWire(%x, %q) = %q, the generated Struct holds %q", b, path, got, want)
		}
	})
}

// claimFromWire is the decoder's claim walk on its own, for the tests:
// it returns the claim at path in metadataContext (the bytes of
// an envoy.config.core.v3.Metadata): filter_metadata[namespace], then one
// nested Struct a name, the last being the claim. A string claim is
// returned as it is (pointing into metadataContext), a whole number below
// 2^53 in decimal (wholeNumber, as claimFromMetadata); anything else, or a
// missing or malformed claim, is "".
func claimFromWire(metadataContext []byte, namespace string, path []string) string {
	s, err := mapValue(metadataContext, fieldMetadataFilter, namespace)
	if err != nil || s == nil {
		return ""
	}
	v, err := claimIn(s, path)
	if err != nil {
		return ""
	}
	return v
}
