// Command floor-authz is the load harness's transport floor: an Envoy
// ext_authz server that never decodes the CheckRequest and answers with an
// OK response encoded once at start. What it costs per Check is gRPC and
// HTTP/2 alone, the least any ext_authz server in Go can cost; no server
// that reads the request can beat it.
package main

import (
	"context"
	"fmt"
	"math"
	"os"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/test/load"

	// Registers the standard "proto" codec the fallback uses.
	_ "google.golang.org/grpc/encoding/proto"
)

// skipped is what the Check handler decodes into: the codec leaves the
// bytes unread.
type skipped struct{}

// encoded is a message already in wire form: the codec sends its bytes.
type encoded []byte

// codec is the "proto" codec for this server: it skips requests decoded
// into *skipped and sends encoded as is, and hands every other message
// (reflection) to the standard codec.
type codec struct{ std encoding.CodecV2 }

func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if b, ok := v.(encoded); ok {
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return c.std.Marshal(v)
}

func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	if _, ok := v.(*skipped); ok {
		return nil
	}
	return c.std.Unmarshal(data, v)
}

func (codec) Name() string { return "proto" }

func main() {
	b, err := proto.Marshal(&authv3.CheckResponse{
		Status:       &status.Status{Code: 0},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor-authz:", err)
		os.Exit(1)
	}
	ok := encoded(b)
	skip := &skipped{}
	// The Authorization service by hand, so that Check's request and
	// response types are the two the codec treats specially. The handler
	// shares one *skipped: nothing is written into it.
	desc := grpc.ServiceDesc{
		ServiceName: "envoy.service.auth.v3.Authorization",
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Check",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				if err := dec(skip); err != nil {
					return nil, err
				}
				return ok, nil
			},
		}},
		Metadata: "envoy/service/auth/v3/external_auth.proto",
	}
	// Stream workers as flowlock-authz has them (authz.StreamWorkers): a
	// goroutine per Check, whose stack grows each time, is a cost gRPC can
	// avoid, so the floor avoids it too. It has no in-flight cap.
	workers := authz.StreamWorkers(math.MaxInt)
	s := grpc.NewServer(grpc.ForceServerCodecV2(codec{std: encoding.GetCodecV2("proto")}), grpc.NumStreamWorkers(workers))
	s.RegisterService(&desc, struct{}{})
	os.Exit(load.ServeMain("floor-authz", s))
}
