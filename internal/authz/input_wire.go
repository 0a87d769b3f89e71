package authz

import (
	"errors"
	"math"
	"slices"
	"time"
	"unicode/utf8"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
)

// The wire decoder fills Input straight from a CheckRequest's bytes, the
// way readInput fills it from the generated message, without building the
// message: a CheckRequest from Envoy carries dozens of headers, peers,
// metadata and TLS details, and the generated decoder allocates every one
// of them, while a Check reads a handful of fields.
//
// It follows protobuf's own rules for everything it reads, so that the two
// agree on every input the generated decoder accepts (FuzzWireDecoder):
//   - a singular field seen twice: the last scalar wins, messages merge,
//     which a single pass in wire order does by itself;
//   - a oneof member replaces the others (Address, SocketAddress's port);
//   - a map key seen twice: the last entry wins;
//   - a known field number with the wrong wire type is an unknown field;
//   - unknown fields are skipped.
//
// Strings point into the request bytes (no copy): they are valid until the
// Check ends, when the bytes go back to gRPC's pool. Nothing may keep them
// beyond it: checkWire swaps the strings a decision may keep (path, name,
// claim) for stable copies before deciding (intern.go says why a copy
// where each is kept is not enough); TestWireInputIsNotKept and
// kept_strings_test.go prove it.
//
// Two shortcuts, both safe:
//   - Fields Input does not read are skipped by their length, not parsed, so
//     a malformed header value or TLS detail deep inside a field we skip is
//     not noticed (the generated decoder refuses the whole request). The
//     skipped bytes cannot change anything Input holds, and Envoy never
//     sends such a request.
//   - UTF-8 is checked only in the strings Input keeps: those are the ones
//     whose validity readInput relies on (proto.Unmarshal refuses invalid
//     UTF-8 in any string field), and checking the rest costs time for
//     nothing Input holds.

// Field numbers of what Input reads, from envoy/service/auth/v3
// (external_auth.proto, attribute_context.proto), envoy/config/core/v3
// (address.proto, base.proto) and google/protobuf (timestamp.proto,
// struct.proto). TestWireFieldNumbers checks each against the generated
// descriptors.
const (
	fieldCheckAttributes = 1 // CheckRequest.attributes

	fieldAttrSource   = 1  // AttributeContext.source (Peer)
	fieldAttrRequest  = 4  // AttributeContext.request
	fieldAttrMetadata = 11 // AttributeContext.metadata_context (Metadata)

	fieldPeerAddress = 1 // Peer.address (Address)

	fieldAddressSocket   = 1 // Address.socket_address, oneof with:
	fieldAddressPipe     = 2 // Address.pipe
	fieldAddressInternal = 3 // Address.envoy_internal_address

	fieldSocketAddress   = 2 // SocketAddress.address
	fieldSocketPortValue = 3 // SocketAddress.port_value, oneof with:
	fieldSocketNamedPort = 4 // SocketAddress.named_port

	fieldRequestTime = 1 // Request.time (Timestamp)
	fieldRequestHTTP = 2 // Request.http (HttpRequest)

	fieldTimeSeconds = 1 // Timestamp.seconds
	fieldTimeNanos   = 2 // Timestamp.nanos

	fieldHTTPMethod    = 2  // HttpRequest.method
	fieldHTTPHeaders   = 3  // HttpRequest.headers (map<string, string>)
	fieldHTTPPath      = 4  // HttpRequest.path
	fieldHTTPHost      = 5  // HttpRequest.host
	fieldHTTPHeaderMap = 13 // HttpRequest.header_map (HeaderMap)

	fieldHeaderMapHeaders = 1 // HeaderMap.headers (repeated HeaderValue)

	fieldHeaderKey      = 1 // HeaderValue.key
	fieldHeaderValue    = 2 // HeaderValue.value
	fieldHeaderRawValue = 3 // HeaderValue.raw_value (bytes)

	fieldMapKey   = 1 // a map entry's key
	fieldMapValue = 2 // a map entry's value

	fieldMetadataFilter = 1 // Metadata.filter_metadata (map<string, Struct>)

	fieldStructFields = 1 // Struct.fields (map<string, Value>)

	fieldValueNull   = 1 // Value.null_value, oneof with:
	fieldValueNumber = 2 // Value.number_value (double)
	fieldValueString = 3 // Value.string_value
	fieldValueBool   = 4 // Value.bool_value
	fieldValueStruct = 5 // Value.struct_value
	fieldValueList   = 6 // Value.list_value
)

// The range of a valid google.protobuf.Timestamp (timestamppb's IsValid):
// 0001-01-01 to 9999-12-31, nanos in [0, 1e9).
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

var errInvalidUTF8 = errors.New("string field contains invalid UTF-8")

// A field is one field of a message: its number and wire type, and its
// value: the payload of a length-delimited field, the value of a varint or
// fixed-width one (groups are skipped whole).
type field struct {
	num protowire.Number
	typ protowire.Type
	b   []byte
	n   uint64
}

// is reports whether f is field num as a length-delimited field: strings,
// bytes, messages and map entries. With any other wire type protobuf
// treats it as an unknown field.
func (f field) is(num protowire.Number) bool { return f.num == num && f.typ == protowire.BytesType }

// isVarint is is for varint fields (integers, bools, enums).
func (f field) isVarint(num protowire.Number) bool {
	return f.num == num && f.typ == protowire.VarintType
}

// fields reads the fields of one message in wire order:
//
//	r := fields{b: msg}
//	for r.next() {
//		switch f := r.f; { ... r.check(read(f)) ... }
//	}
//	return r.err
//
// The first malformed field, or the first error passed to check, ends the
// loop and is r.err.
type fields struct {
	b   []byte
	f   field // the field next read
	err error
}

// next reads the next field into r.f, and reports whether there was one.
func (r *fields) next() bool {
	if len(r.b) == 0 || r.err != nil {
		return false
	}
	num, typ, n := protowire.ConsumeTag(r.b)
	if n < 0 {
		r.err = protowire.ParseError(n)
		return false
	}
	b := r.b[n:]
	r.f = field{num: num, typ: typ}
	switch typ {
	case protowire.VarintType:
		r.f.n, n = protowire.ConsumeVarint(b)
	case protowire.Fixed64Type:
		r.f.n, n = protowire.ConsumeFixed64(b)
	case protowire.Fixed32Type:
		var v uint32
		v, n = protowire.ConsumeFixed32(b)
		r.f.n = uint64(v)
	case protowire.BytesType:
		r.f.b, n = protowire.ConsumeBytes(b)
	default: // groups, and reserved wire types, which are an error
		n = protowire.ConsumeFieldValue(num, typ, b)
	}
	if n < 0 {
		r.err = protowire.ParseError(n)
		return false
	}
	r.b = b[n:]
	return true
}

// check ends the loop with err, unless it is nil.
func (r *fields) check(err error) {
	if err != nil {
		r.err = err
	}
}

// alias returns b as a string without copying: the string is valid only as
// long as b is, which for a request is until its Check ends.
func alias(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// text reads the current field as a proto string, which must be valid
// UTF-8, into *s (see alias).
func (r *fields) text(s *string) {
	if !utf8.Valid(r.f.b) {
		r.err = errInvalidUTF8
		return
	}
	*s = alias(r.f.b)
}

// headerHit is what one wire decode found for a wanted header: the last
// value in the headers map (which wins when present), and the last one in
// header_map.
type headerHit struct {
	inMap    bool
	mapValue string
	rawValue string
}

func (h headerHit) value() string {
	if h.inMap {
		return h.mapValue
	}
	return h.rawValue
}

// wireDecoder is the state of one decode, reused between Checks: it keeps
// what a single pass has to remember until the end, where protobuf's rules
// say which occurrence counts. Slot 0 of hits is ":path" (readInput's
// fallback for Input.Path), slot i+1 is want[i].
type wireDecoder struct {
	in     Input
	want   headerTable
	hits   [1 + maxWantedHeaders]headerHit
	strip  []string // x-flowlock-* names from header_map, after the map's
	addr   string
	time   bool // a request time was present, even empty
	secs   int64
	nanos  int32
	claims *claimPath // nil: no claim is read
	claim  []byte     // the last filter_metadata Struct of claims' namespace
}

// claimPath names a claim the JWT filter put into the request's metadata:
// attributes.metadata_context.filter_metadata[namespace], then path
// through nested Structs.
type claimPath struct {
	namespace string
	path      []string
}

// decode fills d.in from the bytes of a CheckRequest, reading the headers
// in want and, when claims is not nil, that claim. It returns an error for
// a request protobuf could not decode; d.in is then incomplete.
func (d *wireDecoder) decode(b []byte, want headerTable, claims *claimPath) error {
	*d = wireDecoder{in: Input{Strip: d.in.Strip[:0]}, want: want, strip: d.strip[:0], claims: claims}
	r := fields{b: b}
	for r.next() {
		if r.f.is(fieldCheckAttributes) {
			r.check(d.attributes(r.f.b))
		}
	}
	if r.err != nil {
		return r.err
	}
	in := &d.in
	in.Source = sourceIP(d.addr)
	if d.time && d.secs >= minTimestampSeconds && d.secs <= maxTimestampSeconds && d.nanos >= 0 && d.nanos < 1e9 {
		in.Time = time.Unix(d.secs, int64(d.nanos)).UTC()
	}
	if in.Path == "" {
		in.Path = d.hits[0].value()
	}
	for i, h := range d.want {
		*in.header(h.field) = d.hits[i+1].value()
	}
	// The headers map holds each name once; the same name sent twice on
	// the wire is one map entry, so it is listed once. Sorting keeps this
	// linear-logarithmic however many names a hostile request sends, and
	// Envoy does not care in which order it removes headers.
	if len(in.Strip) > 1 {
		slices.Sort(in.Strip)
		in.Strip = slices.Compact(in.Strip)
	}
	in.Strip = append(in.Strip, d.strip...)
	if d.claims != nil && d.claim != nil {
		claim, err := claimIn(d.claim, d.claims.path)
		if err != nil {
			return err
		}
		d.in.Claim = claim
	}
	return nil
}

func (d *wireDecoder) attributes(b []byte) error {
	r := fields{b: b}
	for r.next() {
		switch f := r.f; {
		case f.is(fieldAttrSource):
			r.check(d.peer(f.b))
		case f.is(fieldAttrRequest):
			r.check(d.request(f.b))
		case f.is(fieldAttrMetadata) && d.claims != nil:
			// Metadata messages merge, and filter_metadata is a map: the
			// last entry for the namespace, in any of them, wins.
			s, err := mapValue(f.b, fieldMetadataFilter, d.claims.namespace)
			if s != nil {
				d.claim = s
			}
			r.check(err)
		}
	}
	return r.err
}

func (d *wireDecoder) peer(b []byte) error {
	r := fields{b: b}
	for r.next() {
		if r.f.is(fieldPeerAddress) {
			r.check(d.address(r.f.b))
		}
	}
	return r.err
}

func (d *wireDecoder) address(b []byte) error {
	r := fields{b: b}
	for r.next() {
		switch f := r.f; {
		case f.is(fieldAddressSocket):
			r.check(d.socketAddress(f.b))
		case f.is(fieldAddressPipe), f.is(fieldAddressInternal):
			// Another member of the oneof replaces the socket address.
			d.addr, d.in.SourcePort = "", 0
		}
	}
	return r.err
}

func (d *wireDecoder) socketAddress(b []byte) error {
	r := fields{b: b}
	for r.next() {
		switch f := r.f; {
		case f.is(fieldSocketAddress):
			r.text(&d.addr)
		case f.isVarint(fieldSocketPortValue):
			d.in.SourcePort = uint32(f.n)
		case f.is(fieldSocketNamedPort):
			var name string
			r.text(&name)
			d.in.SourcePort = 0 // the other member of the port oneof
		}
	}
	return r.err
}

func (d *wireDecoder) request(b []byte) error {
	r := fields{b: b}
	for r.next() {
		switch f := r.f; {
		case f.is(fieldRequestTime):
			d.time = true
			r.check(d.timestamp(f.b))
		case f.is(fieldRequestHTTP):
			r.check(d.http(f.b))
		}
	}
	return r.err
}

func (d *wireDecoder) timestamp(b []byte) error {
	r := fields{b: b}
	for r.next() {
		switch f := r.f; {
		case f.isVarint(fieldTimeSeconds):
			d.secs = int64(f.n)
		case f.isVarint(fieldTimeNanos):
			d.nanos = int32(f.n)
		}
	}
	return r.err
}

func (d *wireDecoder) http(b []byte) error {
	r := fields{b: b}
	for r.next() {
		switch f := r.f; {
		case f.is(fieldHTTPMethod):
			r.text(&d.in.Method)
		case f.is(fieldHTTPPath):
			r.text(&d.in.Path)
		case f.is(fieldHTTPHost):
			r.text(&d.in.Host)
		case f.is(fieldHTTPHeaders):
			r.check(d.headerEntry(f.b))
		case f.is(fieldHTTPHeaderMap):
			r.check(d.headerMap(f.b))
		}
	}
	return r.err
}

// headerEntry reads one entry of the headers map.
func (d *wireDecoder) headerEntry(b []byte) error {
	key, value, err := mapEntry(b)
	if err != nil {
		return err
	}
	k := alias(key)
	wanted := d.match(k, func(h *headerHit) { h.inMap, h.mapValue = true, alias(value) })
	strip := k != riskHeader && hasPrefixFold(k, headerPrefix)
	if (wanted || strip) && (!utf8.Valid(key) || !utf8.Valid(value)) {
		return errInvalidUTF8
	}
	if strip {
		d.in.Strip = append(d.in.Strip, k)
	}
	return nil
}

func (d *wireDecoder) headerMap(b []byte) error {
	r := fields{b: b}
	for r.next() {
		if r.f.is(fieldHeaderMapHeaders) {
			r.check(d.headerValue(r.f.b))
		}
	}
	return r.err
}

// headerValue reads one raw header (HeaderValue): its value, or raw_value
// when the value is empty.
func (d *wireDecoder) headerValue(b []byte) error {
	var key, value, raw []byte
	r := fields{b: b}
	for r.next() {
		switch f := r.f; {
		case f.is(fieldHeaderKey):
			key = f.b
		case f.is(fieldHeaderValue):
			value = f.b
		case f.is(fieldHeaderRawValue):
			raw = f.b
		}
	}
	if r.err != nil {
		return r.err
	}
	k := alias(key)
	wanted := d.match(k, func(h *headerHit) {
		h.rawValue = alias(value)
		if len(value) == 0 {
			h.rawValue = alias(raw)
		}
	})
	strip := k != riskHeader && hasPrefixFold(k, headerPrefix)
	// raw_value is bytes, not a string: it is not checked.
	if (wanted || strip) && (!utf8.Valid(key) || !utf8.Valid(value)) {
		return errInvalidUTF8
	}
	if strip {
		d.strip = append(d.strip, k)
	}
	return nil
}

// match calls set on the hit of every wanted header named name, and
// reports whether there was one.
func (d *wireDecoder) match(name string, set func(*headerHit)) bool {
	found := false
	if name == ":path" {
		set(&d.hits[0])
		found = true
	}
	for i, h := range d.want {
		if h.name == name {
			set(&d.hits[i+1])
			found = true
		}
	}
	return found
}

// mapEntry returns the key and value of a map entry whose key and value
// are length-delimited (strings, bytes, messages); the last of each wins.
func mapEntry(b []byte) (key, value []byte, err error) {
	// Envoy, like every protobuf encoder, writes an entry as its key then
	// its value; read that shape directly (a third of a Check's decoding
	// is header entries), and any other through the general loop.
	if len(b) > 0 && b[0] == byte(protowire.EncodeTag(fieldMapKey, protowire.BytesType)) {
		k, n := protowire.ConsumeBytes(b[1:])
		if rest := b[1+max(n, 0):]; n >= 0 && len(rest) > 0 && rest[0] == byte(protowire.EncodeTag(fieldMapValue, protowire.BytesType)) {
			if v, m := protowire.ConsumeBytes(rest[1:]); m == len(rest)-1 {
				return k, v, nil
			}
		}
	}
	r := fields{b: b}
	for r.next() {
		switch f := r.f; {
		case f.is(fieldMapKey):
			key = f.b
		case f.is(fieldMapValue):
			value = f.b
		}
	}
	return key, value, r.err
}

// mapValue returns the value of key in the map field num (string keys,
// message values) of the message b, or nil when there is none. The last
// entry wins, and replaces earlier ones whole, as protobuf's maps do.
func mapValue(b []byte, num protowire.Number, key string) ([]byte, error) {
	var found []byte
	r := fields{b: b}
	for r.next() {
		if !r.f.is(num) {
			continue
		}
		k, v, err := mapEntry(r.f.b)
		r.check(err)
		if err == nil && alias(k) == key {
			found = v
			if found == nil {
				found = []byte{} // present, and empty
			}
		}
	}
	return found, r.err
}

// claimIn follows path through the Struct s and returns the claim at its
// end: a string as it is (pointing into s), a whole number below 2^53 in
// decimal (wholeNumber, as claimFromMetadata); anything else, or a missing
// claim, is "".
func claimIn(s []byte, path []string) (string, error) {
	if len(path) == 0 {
		return "", nil
	}
	v, err := mapValue(s, fieldStructFields, path[0])
	if err != nil || v == nil {
		return "", err
	}
	return claimValue(v, path[1:])
}

// claimValue reads a Value, following rest into it when it is a Struct.
// Value's kind is a oneof: the last member seen wins, and a struct_value
// seen again merges with the one before, so the name looked for is the
// last one found in the struct_values since the kind last changed.
func claimValue(v []byte, rest []string) (string, error) {
	var (
		kind   protowire.Number // the member last seen, 0 for none
		str    string
		num    float64
		nested []byte // the Value of rest[0], if a struct_value held it
	)
	r := fields{b: v}
	for r.next() {
		switch f := r.f; {
		case f.isVarint(fieldValueNull), f.is(fieldValueList):
			kind = f.num
		case f.num == fieldValueNumber && f.typ == protowire.Fixed64Type:
			kind, num = f.num, math.Float64frombits(f.n)
		case f.is(fieldValueString):
			kind = f.num
			r.text(&str)
		case f.isVarint(fieldValueBool):
			kind = f.num
		case f.is(fieldValueStruct):
			if kind != fieldValueStruct {
				nested = nil // a new Struct: what an earlier one held is gone
			}
			kind = f.num
			if len(rest) > 0 {
				n, err := mapValue(f.b, fieldStructFields, rest[0])
				r.check(err)
				if n != nil {
					nested = n
				}
			}
		}
	}
	if r.err != nil {
		return "", r.err
	}
	if len(rest) > 0 {
		if kind != fieldValueStruct || nested == nil {
			return "", nil
		}
		return claimValue(nested, rest[1:])
	}
	switch kind {
	case fieldValueString:
		return str, nil
	case fieldValueNumber:
		return wholeNumber(num), nil
	}
	return "", nil
}
