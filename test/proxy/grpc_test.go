package proxy

import (
	"encoding/json"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// headerOption is a HeaderValueOption as grpcurl renders it.
type headerOption struct {
	Header struct{ Key, Value string } `json:"header"`
}

// checkResponse is the part of grpcurl's JSON rendering of an ext_authz
// CheckResponse that the test reads.
type checkResponse struct {
	Status struct {
		Code int `json:"code"`
	} `json:"status"`
	OkResponse *struct {
		Headers         []headerOption `json:"headers"`
		HeadersToRemove []string       `json:"headersToRemove"`
	} `json:"okResponse"`
	DeniedResponse *struct {
		Status struct {
			Code string `json:"code"`
		} `json:"status"`
		Headers []headerOption `json:"headers"`
		Body    string         `json:"body"`
	} `json:"deniedResponse"`
}

// checkRequest is an Envoy CheckRequest in protojson, as grpcurl -d takes
// it: a GET /data from source, with a forged Flow Lock header.
func checkRequest(source string) string {
	return `{"attributes": {
  "source": {"address": {"socketAddress": {"address": "` + source + `", "portValue": 4711}}},
  "request": {"http": {"method": "GET", "path": "/data", "host": "api",
    "headers": {":method": "GET", ":path": "/data", ":authority": "api", "x-flowlock-admin": "1"}}}}}`
}

// TestGRPCThirdPartyClients speaks to flowlock-authz's gRPC API with the
// clients operators use: grpcurl through server reflection (list, Check an
// allowed and a denied request) and grpc-health-probe as a health check,
// before and after SIGTERM, next to the binary's own healthcheck command.
func TestGRPCThirdPartyClients(t *testing.T) {
	endToEnd(t)
	grpcurl := tool(t, "grpcurl")
	probe := tool(t, "grpc-health-probe")
	self := flowlocktest.Bin("flowlock-authz")
	fl := startFlowlock(t, "--deny", "198.51.100.66/32")

	const authz = "envoy.service.auth.v3.Authorization"
	probeArgs := []string{"-addr", fl.GRPCAddr, "-connect-timeout", "2s", "-rpc-timeout", "2s"}
	for _, service := range []string{"", authz} {
		out, code := runTool(t, "", probe, append(probeArgs, "-service", service)...)
		if code != 0 || !strings.Contains(out, "SERVING") {
			t.Errorf("grpc-health-probe -service %q: exit %d: %s", service, code, out)
		}
	}
	if out, code := runTool(t, "", self, "healthcheck", "--grpc-addr", fl.GRPCAddr); code != 0 || !strings.Contains(out, "SERVING") {
		t.Errorf("flowlock-authz healthcheck: exit %d: %s", code, out)
	}

	out, code := runTool(t, "", grpcurl, "-plaintext", fl.GRPCAddr, "list")
	services := strings.Fields(out)
	if code != 0 || !slices.Contains(services, authz) || !slices.Contains(services, "grpc.health.v1.Health") {
		t.Errorf("grpcurl list: exit %d: %s; want %s and grpc.health.v1.Health", code, out, authz)
	}

	// An allowed request: OK, the score for the upstream, and the forged
	// header removed.
	out, code = runTool(t, checkRequest("198.51.100.7"), grpcurl, "-plaintext", "-d", "@", fl.GRPCAddr, authz+"/Check")
	var allow checkResponse
	if err := json.Unmarshal([]byte(out), &allow); code != 0 || err != nil {
		t.Fatalf("grpcurl Check: exit %d, %v: %s", code, err, out)
	}
	if allow.Status.Code != 0 || allow.OkResponse == nil {
		t.Fatalf("grpcurl Check of an unknown client: %s; want an allow", out)
	}
	risk := slices.ContainsFunc(allow.OkResponse.Headers, func(h headerOption) bool {
		return h.Header.Key == "x-flowlock-risk" && h.Header.Value != ""
	})
	if !risk || !slices.Contains(allow.OkResponse.HeadersToRemove, "x-flowlock-admin") {
		t.Errorf("allow = %s; want x-flowlock-risk set and x-flowlock-admin removed", out)
	}

	// A deny-listed client: PERMISSION_DENIED with Flow Lock's 403.
	out, code = runTool(t, checkRequest("198.51.100.66"), grpcurl, "-plaintext", "-d", "@", fl.GRPCAddr, authz+"/Check")
	var deny checkResponse
	if err := json.Unmarshal([]byte(out), &deny); code != 0 || err != nil {
		t.Fatalf("grpcurl Check: exit %d, %v: %s", code, err, out)
	}
	if deny.Status.Code != 7 || deny.DeniedResponse == nil || deny.DeniedResponse.Status.Code != "Forbidden" ||
		!strings.Contains(deny.DeniedResponse.Body, `"error":"denied"`) {
		t.Errorf("grpcurl Check of a deny-listed client: %s; want PERMISSION_DENIED (7) with a 403 and the JSON body", out)
	}

	// SIGTERM: health goes NOT_SERVING and the listener closes; the probe
	// and the healthcheck command must fail from then on.
	if err := fl.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, code = runTool(t, "", probe, probeArgs...)
		if code != 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("grpc-health-probe still succeeds 15s after SIGTERM: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// 2: connection failed, 3: RPC failed, 4: NOT_SERVING.
	if code < 2 || code > 4 {
		t.Errorf("grpc-health-probe after SIGTERM: exit %d (%s); want 2, 3 or 4", code, out)
	}
	t.Logf("grpc-health-probe after SIGTERM: exit %d: %s", code, strings.TrimSpace(out))
	if out, code := runTool(t, "", self, "healthcheck", "--grpc-addr", fl.GRPCAddr, "--timeout", "2s"); code == 0 {
		t.Errorf("flowlock-authz healthcheck after SIGTERM: exit 0: %s", out)
	}
	select {
	case <-fl.Done():
	case <-time.After(20 * time.Second):
		t.Error("flowlock-authz still running 20s after SIGTERM")
	}
}
