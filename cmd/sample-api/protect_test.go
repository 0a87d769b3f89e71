package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/flowlock/flowlock/test/flowlocktest"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// denyAll is a real ext_authz gRPC server that denies every request with
// the answer Flow Lock gives a quarantined client, and counts the checks.
type denyAll struct {
	authv3.UnimplementedAuthorizationServer
	checks chan string
}

func (d denyAll) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	d.checks <- req.GetAttributes().GetRequest().GetHttp().GetPath()
	h := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: k, Value: v}}
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.PermissionDenied)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
			Headers: []*corev3.HeaderValueOption{h("retry-after", "30"), h("content-type", "application/json")},
			Body:    `{"error":"quarantined","reason":"periodic","retry_after":30}`,
		}},
	}, nil
}

// TestRunProtectedByFlowLock runs the program with --flowlock-addr and two
// listen addresses: /data on either asks Flow Lock and returns its deny;
// /healthz is never checked.
func TestRunProtectedByFlowLock(t *testing.T) {
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := denyAll{checks: make(chan string, 10)}
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, d)
	go gs.Serve(gl)
	defer gs.Stop()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var logs flowlocktest.SyncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0,127.0.0.1:0", "--flowlock-addr", gl.Addr().String()}, io.Discard, &logs)
	}()
	re := regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)
	deadline := time.Now().Add(5 * time.Second)
	var addrs [][]string
	for addrs = re.FindAllStringSubmatch(logs.String(), -1); len(addrs) < 2; addrs = re.FindAllStringSubmatch(logs.String(), -1) {
		if time.Now().After(deadline) {
			t.Fatalf("not listening twice; logs: %s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), `"msg":"protected by flow lock"`) {
		t.Errorf("no log line saying the API is protected: %s", logs.String())
	}
	for _, a := range addrs {
		resp, body := get(t, "http://"+a[1]+"/data", nil)
		var deny map[string]any
		if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Retry-After") != "30" || json.Unmarshal(body, &deny) != nil || deny["error"] != "quarantined" {
			t.Errorf("GET /data on %s: %d %v %s; want Flow Lock's deny", a[1], resp.StatusCode, resp.Header, body)
		}
		if p := <-d.checks; p != "/data" {
			t.Errorf("Flow Lock checked %q, want /data", p)
		}
		if resp, _ := get(t, "http://"+a[1]+"/healthz", nil); resp.StatusCode != http.StatusOK {
			t.Errorf("GET /healthz: %d, want 200 unchecked", resp.StatusCode)
		}
	}
	select {
	case p := <-d.checks:
		t.Errorf("/healthz or something else was checked: %q", p)
	default:
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run = %v", err)
	}
}

func TestRunFlowlockAddrInvalid(t *testing.T) {
	err := run(t.Context(), []string{"--addr", "127.0.0.1:0", "--flowlock-addr", "no-port"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--flowlock-addr") {
		t.Errorf("err = %v, want one naming --flowlock-addr", err)
	}
}
