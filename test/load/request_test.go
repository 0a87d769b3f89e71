package load

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// TestRequestEncoding: the bytes a request writes per send decode to
// exactly the CheckRequest built the ordinary way, for short and long
// addresses (a length past one varint byte), with and without
// X-Forwarded-For, and after rewriting the same request many times.
func TestRequestEncoding(t *testing.T) {
	long := "2001:db8:" + strings.Repeat("ffff:", 40) + "1" // 210 bytes: a two-byte length
	times := []time.Time{time.Unix(0, 0), time.Unix(1767225600, 999999999), time.Now()}
	for _, xff := range []bool{false, true} {
		for _, worker := range []int{0, 7, 20001} {
			r := newRequest(worker, xff)
			for i, client := range []string{"10.0.0.1", "10.255.255.254", long, "", "10.0.0.2"} {
				at := times[i%len(times)]
				var got authv3.CheckRequest
				if err := proto.Unmarshal(r.set(client, at), &got); err != nil {
					t.Fatalf("xff %v worker %d client %q: %v", xff, worker, client, err)
				}
				want := newMessage(worker, client, at, xff)
				if !proto.Equal(want, &got) {
					t.Errorf("xff %v worker %d client %q: encoded\n%s\nbuilt\n%s", xff, worker, client, prototext.Format(&got), prototext.Format(want))
				}
			}
		}
	}
}

// TestReadAnswer: the answer read from a response's bytes is what the
// generated decoder finds, for the answers servers send, and bytes that
// are not a CheckResponse give an error, never a panic.
func TestReadAnswer(t *testing.T) {
	denied := func(code typev3.StatusCode) *authv3.CheckResponse {
		return &authv3.CheckResponse{
			Status: &status.Status{Code: 7, Message: "quarantined"},
			HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
				Status:  &typev3.HttpStatus{Code: code},
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "retry-after", Value: "3599"}}},
				Body:    "{}",
			}},
		}
	}
	for _, resp := range []*authv3.CheckResponse{
		{},
		{Status: &status.Status{}, HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-flowlock-score", Value: "12"}}},
		}}},
		denied(typev3.StatusCode_Forbidden),
		denied(typev3.StatusCode_TooManyRequests),
		{Status: &status.Status{Code: 14}},
	} {
		b, err := proto.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := readAnswer(b)
		want := answer{code: resp.GetStatus().GetCode(), denied: int32(resp.GetDeniedResponse().GetStatus().GetCode())}
		if err != nil || got != want {
			t.Errorf("%v: read %+v, %v; want %+v", resp, got, err, want)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	bad := 0
	for range 20000 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		var resp authv3.CheckResponse
		if _, err := readAnswer(b); err != nil {
			bad++
		} else if proto.Unmarshal(b, &resp) != nil {
			// readAnswer skips what it does not read, so it may accept
			// bytes the generated decoder refuses (a bad string deep in a
			// field it skips); the other way round would be a bug.
			continue
		}
	}
	if bad == 0 {
		t.Error("no random input was refused: readAnswer accepts anything")
	}
}
