package authz

import (
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// Header names Flow Lock writes. Clients may not send any x-flowlock-*
// header upstream: the upstream must be able to trust them.
const (
	riskHeader   = "x-flowlock-risk"
	headerPrefix = "x-flowlock-"
)

// Metadata keys in the ext_authz filter's dynamic metadata namespace
// (envoy.filters.http.ext_authz), for Envoy's access log:
// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:flowlock_score)%.
const (
	metaScore    = "flowlock_score"
	metaReason   = "flowlock_reason"
	metaDecision = "flowlock_decision"
)

var (
	okStatus     = &rpcstatus.Status{Code: int32(codes.OK)}
	deniedStatus = &rpcstatus.Status{Code: int32(codes.PermissionDenied), Message: "flowlock: denied"}

	// Allow responses are immutable and shared, one per score, so that the
	// common case builds nothing. gRPC only reads them while marshalling,
	// which protobuf-go allows concurrently.
	allowByScore [101]*checkAnswer
	riskHeaders  [101]*corev3.HeaderValueOption

	// The constant headers of a deny, shared the same way.
	denyStatus      = &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden}
	tooManyStatus   = &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests}
	jsonContentType = overwrite("content-type", "application/json")
	noStore         = overwrite("cache-control", "no-store")
)

func overwrite(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: key, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

func init() {
	for s := range allowByScore {
		riskHeaders[s] = overwrite(riskHeader, strconv.Itoa(s))
		allowByScore[s] = newCheckAnswer(&authv3.CheckResponse{
			Status: okStatus,
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{riskHeaders[s]},
			}},
		})
	}
}

// allowResponse lets the request through with x-flowlock-risk set for the
// upstream, and strips any other x-flowlock-* header the client sent.
func allowResponse(score uint8, strip []string) *authv3.CheckResponse {
	score = min(score, 100)
	if len(strip) == 0 {
		return allowByScore[score].msg
	}
	return &authv3.CheckResponse{
		Status: okStatus,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         []*corev3.HeaderValueOption{riskHeaders[score]},
			HeadersToRemove: strip,
		}},
	}
}

// Deny answers are cached. A response is immutable once built (gRPC only
// reads it while marshalling, as with allowByScore; net/http only reads
// header values), and a bot hammering away while quarantined gets the same
// answer until its Retry-After ticks down a second or its score moves:
// rebuilding it costs about 20 allocations on gRPC, 8 on forward-auth.
var (
	grpcDenies = newResponseCache[*checkAnswer]()
	httpDenies = newResponseCache[*httpDeny]()
)

// denyKey is everything a deny answer says.
type denyKey struct {
	outcome Outcome
	score   uint8
	retry   int
	reason  string
}

func denyKeyOf(d Decision) denyKey {
	return denyKey{outcome: d.Outcome, score: d.Score, retry: max(d.RetryAfter, 1), reason: d.Reason}
}

// responseCache holds recently built answers, one a slot, replaced on a
// miss. A collision costs a rebuild, never a wrong answer, since the whole
// key is compared (the reason by its bytes, which for the same string is a
// pointer comparison).
//
// The slot is picked from the key's numbers, not a hash of it: a flood of
// quarantined bots is answered with a spread of scores (each bot's score
// moves with its rhythm) and of Retry-After seconds (they were admitted at
// different times), all under one or two reasons. Indexing by
// retry*101+score puts every score of about 80 consecutive Retry-After
// seconds in a slot of its own, so that such a flood rebuilds an answer
// only when its second ticks down, and finding the slot costs a few
// arithmetic operations instead of hashing a string.
type responseCache[V any] struct {
	slots [denySlots]atomic.Pointer[cached[V]]
}

// denySlots is the size of a responseCache: about 80 seconds of every
// score (64 KiB of pointers).
const denySlots = 1 << 13

type cached[V any] struct {
	key denyKey
	val V
}

func newResponseCache[V any]() *responseCache[V] { return new(responseCache[V]) }

// slot returns k's slot. The outcome and the reason's length and first
// byte shift the window, so that the few reasons of a flood ("periodic",
// "manual", "denylist") rarely share slots.
func (c *responseCache[V]) slot(k denyKey) *atomic.Pointer[cached[V]] {
	i := uint64(k.retry)*101 + uint64(k.score) + uint64(k.outcome)*4099
	if k.reason != "" {
		i += (uint64(len(k.reason))<<8 | uint64(k.reason[0])) * 2053
	}
	return &c.slots[i%denySlots]
}

// load returns the answer cached for k, if any.
func (c *responseCache[V]) load(k denyKey) (V, bool) {
	if e := c.slot(k).Load(); e != nil && e.key == k {
		return e.val, true
	}
	var zero V
	return zero, false
}

// store caches v as the answer for k.
func (c *responseCache[V]) store(k denyKey, v V) { c.slot(k).Store(&cached[V]{key: k, val: v}) }

// cachedDenyResponse is denyResponse through the cache.
func cachedDenyResponse(d Decision) *authv3.CheckResponse { return cachedDenyAnswer(d).msg }

// cachedDenyAnswer is denyResponse through the cache, with its encoding.
func cachedDenyAnswer(d Decision) *checkAnswer {
	k := denyKeyOf(d)
	if a, ok := grpcDenies.load(k); ok {
		return a
	}
	a := newCheckAnswer(denyResponse(d))
	grpcDenies.store(k, a)
	return a
}

// A checkAnswer is an immutable CheckResponse with its wire encoding, made
// once by marshalling it: the generated response stays the one source of
// what an answer says (the standard codec marshals msg, the lean codec
// sends wire as it is), and any response cached this way is sent from
// bytes for free.
type checkAnswer struct {
	msg  *authv3.CheckResponse
	wire mem.BufferSlice // nil when msg does not marshal (see checkCodec.Marshal)
}

func newCheckAnswer(msg *authv3.CheckResponse) *checkAnswer {
	a := &checkAnswer{msg: msg}
	// Deterministic: the same answer is the same bytes (the deny metadata
	// is a map).
	if b, err := (proto.MarshalOptions{Deterministic: true}).Marshal(msg); err == nil {
		a.wire = mem.BufferSlice{mem.SliceBuffer(b)}
	}
	return a
}

// denyResponse answers 403 (429 for the volume limit) with Retry-After and
// a JSON body, and puts the score and reason into dynamic metadata for
// Envoy's access log.
func denyResponse(d Decision) *authv3.CheckResponse {
	retry := strconv.Itoa(max(d.RetryAfter, 1))
	httpStatus := denyStatus
	if d.Outcome == VolumeLimited {
		httpStatus = tooManyStatus
	}
	return &authv3.CheckResponse{
		Status: deniedStatus,
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  httpStatus,
			Headers: []*corev3.HeaderValueOption{overwrite("retry-after", retry), jsonContentType, noStore},
			Body:    DenyBody(d),
		}},
		DynamicMetadata: &structpb.Struct{Fields: map[string]*structpb.Value{
			metaScore:    structpb.NewNumberValue(float64(d.Score)),
			metaReason:   structpb.NewStringValue(d.Reason),
			metaDecision: structpb.NewStringValue(d.Outcome.String()),
		}},
	}
}

// DenyBody is the JSON body of a deny, shared by every transport:
// {"error":"quarantined","reason":"periodic","retry_after":N}; the error
// is "denied" for the deny list and "rate_limited" for the volume limit. Reasons are
// Flow Lock's own words or an operator's ban reason, so they are escaped.
func DenyBody(d Decision) string {
	kind := "quarantined"
	switch d.Outcome {
	case DenyListed:
		kind = "denied"
	case VolumeLimited:
		kind = "rate_limited"
	}
	var b strings.Builder
	b.Grow(64 + len(d.Reason))
	b.WriteString(`{"error":"`)
	b.WriteString(kind)
	b.WriteString(`","reason":`)
	reason, err := json.Marshal(d.Reason) // escapes <, >, & and control bytes too
	if err != nil {
		reason = []byte(`"unknown"`)
	}
	b.Write(reason)
	b.WriteString(`,"retry_after":`)
	b.WriteString(strconv.Itoa(max(d.RetryAfter, 1)))
	b.WriteString("}")
	return b.String()
}

// hasPrefixFold is strings.HasPrefix ignoring ASCII case, without
// allocating: Envoy lowercases header names, but header_map keys are raw.
func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}
