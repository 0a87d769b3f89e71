package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// What the HTTP side exposes and whom the service trusts (issue 12, items
// 4, 5, 6 and 9), attacked from outside on the built binary.

const (
	exposureToken  = "chaos-admin-token-0123456789abcdef"
	identityHeader = "x-api-key"
	// customerKey is a customer's API key sent as the identity header: it
	// must never be readable from the API, the stream or the log.
	customerKey = "sk_live_9fQ2mZx81LkPa0cVbN7tR4wE"
)

// tokenFile writes the admin token to a file, so that it stays out of the
// process list.
func tokenFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(exposureToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// sendCheck sends one Check from addr with the identity header set to key
// (none if key is empty).
func sendCheck(t *testing.T, client authv3.AuthorizationClient, addr, key string) {
	t.Helper()
	headers := map[string]string{":method": "GET", ":path": "/api/items", "user-agent": "chaos"}
	if key != "" {
		headers[identityHeader] = key
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/items", Headers: headers,
		}},
	}})
	if err != nil {
		t.Fatalf("Check from %s: %v", addr, err)
	}
}

// get sends GET path to the service with the given Host header.
func get(t *testing.T, s *flowlocktest.Service, path, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+s.HTTPAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	// A stream answered to the wrong Host would never end: read a few
	// seconds of it.
	resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", path, host, err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
	}
	return resp.StatusCode, b.String()
}

// TestHostHeaderRefused: a DNS-rebinding page makes the operator's browser
// ask for the attacker's name; the answer must not be readable.
func TestHostHeaderRefused(t *testing.T) {
	s := start(t)
	for _, path := range []string{"/", "/api/v1/identities", "/api/v1/quarantine", "/api/v1/config", "/api/v1/stream"} {
		code, body := get(t, s, path, "rebind.attacker.example:8080")
		if code != http.StatusMisdirectedRequest || !strings.Contains(body, "--http-allowed-hosts") {
			t.Errorf("GET %s with the attacker's Host = %d %q, want 421 naming --http-allowed-hosts", path, code, body)
		}
	}
	for _, host := range []string{s.HTTPAddr, "localhost"} {
		if code, _ := get(t, s, "/api/v1/identities", host); code != http.StatusOK {
			t.Errorf("GET /api/v1/identities with Host %s = %d, want 200", host, code)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := get(t, s, path, "flowlock-authz.flowlock.svc:8080"); code != http.StatusOK {
			t.Errorf("probe %s with a service name as Host = %d, want 200", path, code)
		}
	}
}

// TestIdentitiesMasked: a customer's API key used as the identity never
// shows in the API, the stream or the log, while the page's buttons keep
// working with what they are shown.
func TestIdentitiesMasked(t *testing.T) {
	s := start(t, "--identity-header", identityHeader, "--admin-token-file", tokenFile(t), "--log-level", "debug")
	client := authv3.NewAuthorizationClient(s.Dial(t))
	for range 5 {
		sendCheck(t, client, "198.51.100.20", customerKey)
	}
	code, body := s.API(t, "POST", "/api/v1/quarantine", exposureToken, `{"identity":"`+customerKey+`","ttl":"10m"}`)
	if code != http.StatusOK {
		t.Fatalf("ban by the key itself = %d %s", code, body)
	}
	var seen []string
	seen = append(seen, body)
	for _, path := range []string{"/api/v1/identities", "/api/v1/quarantine"} {
		_, b := s.API(t, "GET", path, "", "")
		seen = append(seen, b)
	}
	_, b := s.API(t, "GET", "/api/v1/identities/"+url.PathEscape(customerKey), "", "")
	seen = append(seen, b)

	// One stream event.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.HTTPAddr+"/api/v1/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var event string
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			event = data
			break
		}
	}
	resp.Body.Close()
	if event == "" {
		t.Fatal("no stream event")
	}
	seen = append(seen, event)

	var snap struct {
		Quarantine []struct{ Identity string } `json:"quarantine"`
	}
	if err := json.Unmarshal([]byte(event), &snap); err != nil || len(snap.Quarantine) != 1 {
		t.Fatalf("stream event: %v, %s", err, event)
	}
	mask := snap.Quarantine[0].Identity
	if !regexp.MustCompile(`^key:[0-9a-f]{12}…[0-9A-Za-z]{4}$`).MatchString(mask) {
		t.Errorf("stream shows the identity as %q, want a mask like key:3f9a1c0d7b2e…Xk2e", mask)
	}
	for _, path := range []string{"/api/v1/identities", "/api/v1/quarantine"} {
		if _, b := s.API(t, "GET", path, "", ""); !strings.Contains(b, mask) {
			t.Errorf("GET %s does not show the mask %s: %s", path, mask, b)
		}
	}

	// The Release button sends the mask.
	code, body = s.API(t, "DELETE", "/api/v1/quarantine/"+url.PathEscape(mask), exposureToken, "")
	if code != http.StatusOK {
		t.Errorf("release by the mask = %d %s", code, body)
	}
	seen = append(seen, body)

	s.Stop()
	seen = append(seen, s.Logs())
	for i, text := range seen {
		if strings.Contains(text, customerKey) || strings.Contains(text, customerKey[:16]) {
			t.Errorf("the key shows in clear in answer %d: %s", i, text)
		}
	}
	if !strings.Contains(s.Logs(), mask) {
		t.Errorf("the log does not name the identity by its mask %s", mask)
	}
}

// TestTrustEveryoneRefused: --trusted-proxies 0.0.0.0/0 would let every
// client write its own address; it must stop startup.
func TestTrustEveryoneRefused(t *testing.T) {
	for _, list := range []string{"0.0.0.0/0", "::/0", "10.0.0.0/8,0.0.0.0/0,::/0"} {
		out, err := flowlocktest.Run(20*time.Second, "", authz(), "serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--trusted-proxies", list)
		if err == nil || !strings.Contains(out, "trusts every address") || !strings.Contains(out, "--trusted-proxies") {
			t.Errorf("--trusted-proxies %s: err %v, output:\n%s\nwant a refusal naming --trusted-proxies", list, err, out)
		}
	}
}

// TestBidiIdentityRefused: a zero-width space makes "203.0.113.7" + U+200B
// look like an address on the dashboard, and U+202E turns text around. Such
// header values are no identity: the client is known by its address.
func TestBidiIdentityRefused(t *testing.T) {
	s := start(t, "--identity-header", identityHeader)
	client := authv3.NewAuthorizationClient(s.Dial(t))
	sendCheck(t, client, "198.51.100.31", "203.0.113.7\u200b")
	sendCheck(t, client, "198.51.100.32", "abc\u202egpj.exe")
	sendCheck(t, client, "198.51.100.33", "plain-key-for-contrast")
	_, body := s.API(t, "GET", "/api/v1/identities", "", "")
	var got struct {
		Identities []struct{ Identity string } `json:"identities"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, id := range got.Identities {
		names[id.Identity] = true
	}
	if len(names) != 3 || !names["198.51.100.31"] || !names["198.51.100.32"] || names["198.51.100.33"] {
		t.Errorf("identities %v: want the two lookalike senders by address, and the plain key as a key", names)
	}
	if strings.Contains(body, "203.0.113.7") || strings.Contains(body, "\u200b") || strings.Contains(body, "\u202e") || strings.Contains(body, "gpj") {
		t.Errorf("a lookalike identity was accepted: %s", body)
	}
}

// TestBadTokenLogThrottled: a token guesser must not write one log line
// per guess; the metric counts every one.
func TestBadTokenLogThrottled(t *testing.T) {
	s := start(t, "--admin-token-file", tokenFile(t))
	for i := range 300 {
		code, _ := s.API(t, "DELETE", "/api/v1/quarantine/203.0.113.7", "guess-"+strings.Repeat("x", i%20)+"-0000000000", "")
		if code != http.StatusUnauthorized {
			t.Fatalf("guess %d = %d, want 401", i, code)
		}
	}
	_, metrics := s.API(t, "GET", "/metrics", "", "")
	if !strings.Contains(metrics, "flowlock_admin_rejected_requests_total 300") {
		t.Errorf("metrics do not count 300 rejections:\n%s", grepLines(metrics, "rejected"))
	}
	s.Stop()
	if n := strings.Count(s.Logs(), "admin request rejected"); n != 1 {
		t.Errorf("300 bad tokens gave %d WARN lines, want 1", n)
	}
}

// TestStartupWarnings: a token in the process list and a misspelled
// environment variable are said at startup.
func TestStartupWarnings(t *testing.T) {
	s := start(t, "--admin-token", exposureToken, "--identity-header", identityHeader)
	s.Stop()
	logs := s.Logs()
	for _, want := range []string{"--admin-token on the command line is visible", "--identity-header x-api-key is believed as it arrives"} {
		if !strings.Contains(logs, want) {
			t.Errorf("startup log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, exposureToken) {
		t.Error("the log shows the admin token")
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
