package middleware_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/flowlock/flowlock/middleware"
)

// fixed is an ext_authz server that answers every Check with one
// response and does nothing else, so that a benchmark measures the
// middleware and its gRPC round trip, not Flow Lock's decision.
type fixed struct {
	authv3.UnimplementedAuthorizationServer
	resp *authv3.CheckResponse
}

func (f fixed) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return f.resp, nil
}

func startFixed(b *testing.B, resp *authv3.CheckResponse) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := grpc.NewServer()
	authv3.RegisterAuthorizationServer(s, fixed{resp: resp})
	go s.Serve(ln)
	b.Cleanup(s.Stop)
	return ln.Addr().String()
}

func header(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// Flow Lock's answers, as internal/authz builds them.
var (
	allowWithRisk = &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{header("x-flowlock-risk", "12")},
		}},
	}
	quarantined = &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
			Headers: []*corev3.HeaderValueOption{header("retry-after", "300"), header("content-type", "application/json")},
			Body:    `{"error":"quarantined","reason":"periodic","retry_after":300}`,
		}},
	}
)

// BenchmarkHandler measures a request through the middleware against a
// loopback ext_authz server that answers at once, next to the same
// handler unprotected ("bare"): the difference is the middleware's cost
// per request, gRPC round trip included. The server runs in this process,
// so B/op and allocs/op count its side of the call too.
//
//	go test -run '^$' -bench . -benchmem ./middleware/
func BenchmarkHandler(b *testing.B) {
	next := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	run := func(b *testing.B, h http.Handler) {
		b.ReportAllocs()
		req := httptest.NewRequest("GET", "/data?page=2", nil)
		req.RemoteAddr = "192.0.2.10:40000"
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code == http.StatusOK {
				b.Fatal("no answer")
			}
		}
	}
	b.Run("bare", func(b *testing.B) { run(b, next) })
	for _, tc := range []struct {
		name string
		resp *authv3.CheckResponse
	}{{"allow", allowWithRisk}, {"deny", quarantined}} {
		b.Run(tc.name, func(b *testing.B) {
			m, err := middleware.New(startFixed(b, tc.resp), middleware.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			run(b, m.Handler(next))
		})
	}
	// Many requests at once share the one connection.
	b.Run("allow-parallel", func(b *testing.B) {
		m, err := middleware.New(startFixed(b, allowWithRisk), middleware.Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		h := m.Handler(next)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			req := httptest.NewRequest("GET", "/data?page=2", nil)
			req.RemoteAddr = "192.0.2.10:40000"
			for pb.Next() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusNoContent {
					b.Error("not allowed")
					return
				}
			}
		})
	})
}
