package e2e

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

const adminToken = "e2e-admin-token-0123456789"

// checkFrom builds a CheckRequest shaped like the one Envoy sends for a GET
// from ip, stamped with the current time as Envoy stamps arrival.
func checkFrom(ip, path string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.Now(),
			Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: path, Host: "api.example", Protocol: "HTTP/1.1",
				Headers: map[string]string{":method": "GET", ":path": path, ":authority": "api.example", "user-agent": "e2e"},
			},
		},
	}}
}

type verdict struct {
	allowed    bool
	status     int
	retryAfter int
	body       string
}

func check(t *testing.T, c authv3.AuthorizationClient, ip string) verdict {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, checkFrom(ip, "/data"))
	if err != nil {
		t.Fatalf("Check from %s: %v (a deny must be a response, not an error)", ip, err)
	}
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		return verdict{allowed: true}
	}
	d := resp.GetDeniedResponse()
	v := verdict{status: int(d.GetStatus().GetCode()), body: d.GetBody()}
	for _, h := range d.GetHeaders() {
		if strings.EqualFold(h.GetHeader().GetKey(), "retry-after") {
			v.retryAfter, _ = strconv.Atoi(h.GetHeader().GetValue())
		}
	}
	return v
}

// TestService walks through what issue #2 promises an operator, against the
// real binary: health, a fixed-interval bot quarantined, a human-like client
// left alone, release through the admin API, a manual ban that survives a
// restart through --state-file, and deny counts in /metrics.
func TestService(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binary (run without -short; CI does)")
	}
	stateFile := filepath.Join(t.TempDir(), "quarantine.json")
	args := []string{"--admin-token", adminToken, "--state-file", stateFile, "--quarantine-ttl", "10m"}
	svc := flowlocktest.Start(t, authz(), args...)
	authc, health := clients(t, svc)
	waitServing(t, health)

	const bot, human, banned = "127.0.0.10", "127.0.0.11", "127.0.0.12"

	// A human-like client (log-normal gaps, median 100 ms) runs alongside
	// the bot; it must never be denied.
	humanDone := make(chan []int, 1)
	go func() {
		rng := rand.New(rand.NewPCG(7, 11))
		var denied []int
		for i := 1; i <= 60; i++ {
			gap := time.Duration(100 * math.Exp(rng.NormFloat64()) * float64(time.Millisecond))
			time.Sleep(min(gap, 3*time.Second))
			if v := check(t, authc, human); !v.allowed {
				denied = append(denied, i)
			}
		}
		humanDone <- denied
	}()

	// A fixed-interval bot: one request every 50 ms until denied.
	var denied verdict
	n := 0
	tick := time.NewTicker(50 * time.Millisecond)
	for n = 1; n <= 40; n++ {
		<-tick.C
		if v := check(t, authc, bot); !v.allowed {
			denied = v
			break
		}
	}
	tick.Stop()
	if n > 40 {
		t.Fatalf("fixed-interval bot not denied within 40 requests")
	}
	t.Logf("bot denied at request %d: %+v", n, denied)
	if denied.status != 403 || denied.retryAfter < 1 {
		t.Errorf("deny = status %d, Retry-After %d; want 403 and >= 1", denied.status, denied.retryAfter)
	}
	if !strings.Contains(denied.body, `"error":"quarantined"`) || !strings.Contains(denied.body, `"retry_after":`) {
		t.Errorf("deny body = %s; want the JSON error body", denied.body)
	}
	if v := check(t, authc, bot); v.allowed || v.retryAfter < 500 {
		t.Errorf("bot's next request = %+v; want denied with ~600 s left", v)
	}

	if d := <-humanDone; len(d) > 0 {
		t.Errorf("human-like client denied at requests %v", d)
	}

	// The operator sees the bot in the API and releases it.
	if code, body := svc.API(t, "GET", "/api/v1/quarantine", "", ""); code != 200 || !strings.Contains(body, bot) {
		t.Errorf("GET /api/v1/quarantine = %d %s; want the bot listed", code, body)
	}
	if code, _ := svc.API(t, "DELETE", "/api/v1/quarantine/"+bot, "", ""); code != 401 {
		t.Errorf("release without token = %d, want 401", code)
	}
	if code, body := svc.API(t, "DELETE", "/api/v1/quarantine/"+bot, adminToken, ""); code != 200 {
		t.Fatalf("release = %d %s, want 200", code, body)
	}
	if v := check(t, authc, bot); !v.allowed {
		t.Errorf("released bot still denied: %+v", v)
	}

	// A manual ban survives a restart.
	if code, body := svc.API(t, "POST", "/api/v1/quarantine", adminToken,
		`{"identity":"`+banned+`","ttl":"1h","reason":"manual"}`); code != 200 && code != 201 {
		t.Fatalf("ban = %d %s", code, body)
	}
	if v := check(t, authc, banned); v.allowed {
		t.Fatalf("banned client allowed before restart")
	}

	metricsBody := func(s *flowlocktest.Service) string {
		code, body := s.API(t, "GET", "/metrics", "", "")
		if code != 200 {
			t.Fatalf("/metrics = %d", code)
		}
		return body
	}
	denies := regexp.MustCompile(`(?m)^flowlock_authz_checks_total\{decision="deny",mode="enforce",reason="(quarantined|admitted)"\} (\d+)`)
	total := 0
	for _, m := range denies.FindAllStringSubmatch(metricsBody(svc), -1) {
		v, _ := strconv.Atoi(m[2])
		total += v
	}
	if total < 3 {
		t.Errorf("/metrics counts %d denies, want >= 3 (admission, quarantined repeat, banned)", total)
	}

	svc.Stop()
	svc2 := flowlocktest.Start(t, authz(), args...)
	authc2, health2 := clients(t, svc2)
	waitServing(t, health2)
	v := check(t, authc2, banned)
	if v.allowed || v.status != 403 || v.retryAfter < 3000 {
		t.Errorf("after restart the ban = %+v; want 403 with ~1h left", v)
	}
	if v := check(t, authc2, "127.0.0.13"); !v.allowed {
		t.Errorf("a new client is denied after restart: %+v", v)
	}
}

// TestCorruptStateFileStopsStartup: a broken state file is a clear error
// naming the file, never a silent empty start.
func TestCorruptStateFileStopsStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binary (run without -short; CI does)")
	}
	path := filepath.Join(t.TempDir(), "q.json")
	if err := writeFile(path, "{not json"); err != nil {
		t.Fatal(err)
	}
	out, err := runBinary("serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--state-file", path)
	if err == nil {
		t.Fatalf("started with a corrupt state file; output:\n%s", out)
	}
	if !strings.Contains(out, path) {
		t.Errorf("error does not name the state file %s:\n%s", path, out)
	}
}

// TestUnwritableStateFileStopsStartup: a state file that cannot be written
// stops startup too; otherwise every quarantine would be lost at the next
// restart without a word at startup.
func TestUnwritableStateFileStopsStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binary (run without -short; CI does)")
	}
	path := filepath.Join(t.TempDir(), "missing-dir", "q.json")
	out, err := runBinary("serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--state-file", path)
	if err == nil {
		t.Fatalf("started with an unwritable state file; output:\n%s", out)
	}
	if !strings.Contains(out, "--state-file is not writable") || !strings.Contains(out, path) {
		t.Errorf("error does not say the state file %s is not writable:\n%s", path, out)
	}
}

// TestBadConfigStopsStartup: an invalid flag value names the setting.
func TestBadConfigStopsStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: builds and runs the binary (run without -short; CI does)")
	}
	out, err := runBinary("serve", "--ipv6-prefix", "200")
	if err == nil || !strings.Contains(out, "ipv6-prefix") {
		t.Errorf("bad --ipv6-prefix: err %v, output:\n%s", err, out)
	}
}
