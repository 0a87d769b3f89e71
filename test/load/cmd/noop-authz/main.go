// Command noop-authz is the load harness's baseline: an Envoy ext_authz
// server that decodes each CheckRequest with go-control-plane's generated
// code, as any Go ext_authz server does, and answers OK without looking at
// it. Flow Lock's allow path is measured against it: whatever Flow Lock
// costs beyond this is its own work and its own boundary.
package main

import (
	"context"
	"os"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"

	"github.com/flowlock/flowlock/test/load"
)

// noop answers every Check with the same OK response.
type noop struct {
	authv3.UnimplementedAuthorizationServer
}

// ok is shared by every answer: gRPC only reads it.
var ok = &authv3.CheckResponse{
	Status:       &status.Status{Code: 0},
	HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
}

func (noop) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return ok, nil
}

func main() {
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, noop{})
	os.Exit(load.ServeMain("noop-authz", s))
}
