package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// TestMalformedCheckRequests sends the lean decoder what protobuf cannot
// decode (truncated, lengths beyond the end, invalid UTF-8, random bytes).
// Each is answered with INVALID_ARGUMENT and counted as an error, never a
// guess and never a crash; the service answers health checks and ordinary
// Checks afterwards.
func TestMalformedCheckRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	svc := start(t)
	conn := svc.Dial(t)
	good := checkRequest(t, 200)

	path := protowire.AppendString(protowire.AppendTag(nil, 4, protowire.BytesType), "/\xff")
	malformed := [][]byte{
		good[:len(good)-1],
		good[:len(good)/2],
		{0x0a, 0x7f, 0x01},
		{0x0a, 0x02, 0x08},
		nest(nest(nest(path, 2), 4), 1), // attributes.request.http.path, invalid UTF-8
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		b := make([]byte, 1+rng.IntN(64))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		malformed = append(malformed, b)
	}
	refused := 0
	for _, b := range malformed {
		err := check(ctx, conn, b)
		switch status.Code(err) {
		case codes.InvalidArgument:
			refused++
		case codes.OK:
			// Random bytes that happen to be a CheckRequest, or garbage in
			// a field Flow Lock skips (see internal/authz/input_wire.go).
		default:
			t.Fatalf("Check(%x): %v, want INVALID_ARGUMENT or an answer", b, err)
		}
	}
	if refused < 5 {
		t.Errorf("only %d of %d malformed requests refused", refused, len(malformed))
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after malformed requests: %v, %v", resp, err)
	}
	if err := check(ctx, conn, good); err != nil {
		t.Errorf("an ordinary Check after malformed requests: %v", err)
	}
	_, metrics := svc.API(t, "GET", "/metrics", "", "")
	m := regexp.MustCompile(`(?m)^flowlock_authz_checks_total\{decision="error",[^}]*\} (\d+)`).FindAllStringSubmatch(metrics, -1)
	counted := 0
	for _, s := range m {
		n, _ := strconv.Atoi(s[1])
		counted += n
	}
	if counted != refused {
		t.Errorf("%d refused requests counted as %d errors in /metrics", refused, counted)
	}
}

// nest wraps b as field num of a message.
func nest(b []byte, num protowire.Number) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), b)
}

// TestManyFlowlockHeaders: a 3 MB request made of 40000 x-flowlock-*
// headers, the map's sent twice, is answered at once with every name listed
// for removal, each map name once (the names are deduplicated by sorting:
// comparing each with every other would take seconds).
func TestManyFlowlockHeaders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	svc := start(t, "--grpc-max-recv-bytes", strconv.Itoa(4<<20))
	conn := svc.Dial(t)
	const n = 40000
	headers := map[string]string{}
	var raw []*corev3.HeaderValue
	for i := range n {
		name := fmt.Sprintf("x-flowlock-%d", i)
		headers[name] = "1"
		raw = append(raw, &corev3.HeaderValue{Key: name, Value: "1"})
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/data", Headers: headers, HeaderMap: &corev3.HeaderMap{Headers: raw},
		}},
	}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	// Every map entry once more: protobuf keeps the last, and Flow Lock
	// must list the name once.
	again, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Headers: headers}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	b = append(b, again...)
	if len(b) > 4<<20 {
		t.Fatalf("request is %d bytes, over the 4 MiB limit", len(b))
	}
	started := time.Now()
	var resp authv3.CheckResponse
	if err := conn.Invoke(ctx, "/envoy.service.auth.v3.Authorization/Check", b, &resp, grpc.ForceCodecV2(rawCodec{}), grpc.MaxCallRecvMsgSize(8<<20)); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(started); took > 5*time.Second {
		t.Errorf("a Check with %d x-flowlock-* headers took %v", 3*n, took)
	}
	if got := len(resp.GetOkResponse().GetHeadersToRemove()); got != 2*n {
		t.Errorf("headers_to_remove lists %d names, want %d (each map name once, each raw header)", got, 2*n)
	}
}
