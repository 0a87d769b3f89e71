package proxy

import (
	"context"
	"encoding/json"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// proxyUnderTest runs one proxy from its shipped config in front of the
// upstream, asking Flow Lock's forward-auth listener, and returns its base
// URL.
type proxyUnderTest struct {
	name  string
	bin   string
	start func(t *testing.T, bin, forwardAuth, upstream string) string
	// failOpen: with Flow Lock unreachable, requests reach the upstream
	// unchecked (nginx, HAProxy configs); otherwise the client gets a 5xx
	// (Caddy's forward_auth has no failure mode).
	failOpen bool
	// stripsPrefix: the config drops every client X-Flowlock-* header, not
	// only X-Flowlock-Risk (stock nginx cannot match headers by prefix).
	stripsPrefix bool
}

var proxies = []proxyUnderTest{
	{name: "nginx", bin: "nginx", start: startNginx, failOpen: true, stripsPrefix: false},
	{name: "caddy", bin: "caddy", start: startCaddy, failOpen: false, stripsPrefix: true},
	{name: "haproxy", bin: "haproxy", start: startHAProxy, failOpen: true, stripsPrefix: true},
}

// Client source addresses: each is its own identity to Flow Lock, as long
// as the proxy passes it on.
const (
	botAddr     = "127.0.0.20"
	humanAddr   = "127.0.0.21"
	hostileAddr = "127.0.0.22"
)

// TestForwardAuthBehindProxies puts each proxy, started from the config in
// deploy/, between clients and an upstream, with flowlock-authz as its
// forward-auth service, and checks what issue 5 promises: a fixed-interval
// bot gets Flow Lock's 403 with Retry-After and JSON body from the proxy
// within 40 requests, a human-like client gets the upstream's 200
// throughout, the upstream sees X-Flowlock-Risk and never a client's
// X-Flowlock-* header, a client cannot skip the check, and an unreachable
// Flow Lock fails the way the config says.
func TestForwardAuthBehindProxies(t *testing.T) {
	endToEnd(t)
	for _, px := range proxies {
		t.Run(px.name, func(t *testing.T) {
			bin := tool(t, px.bin)
			fl := startFlowlock(t,
				"--forward-auth-addr", "127.0.0.1:0",
				"--trusted-proxies", "127.0.0.1/32",
				// A client that could choose the path Flow Lock sees would
				// pick this one to escape timing: the configs must not let it.
				"--exclude-path", "/healthz")
			up := newUpstream(t)
			base := px.start(t, bin, fl.ForwardAuthAddr, up.addr())

			botAndHuman(t, px, fl, up, base)
			hostileRequest(t, up, base)
			flowlockDown(t, px, fl, up, base)
		})
	}
}

// botAndHuman runs a fixed-interval bot and a human-like client side by
// side through the proxy at base.
func botAndHuman(t *testing.T, px proxyUnderTest, fl *flowlocktest.Service, up *upstream, base string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The human: log-normal gaps (median 100 ms), 20 requests. It sends a
	// forged score and an invented Flow Lock header; neither may reach the
	// upstream.
	const humanRequests = 20
	type humanResult struct {
		got  []response
		errs []error
	}
	humanDone := make(chan humanResult, 1)
	go func() {
		var res humanResult
		c := from(humanAddr)
		rng := rand.New(rand.NewPCG(7, 11))
		for range humanRequests {
			gap := time.Duration(100 * math.Exp(rng.NormFloat64()) * float64(time.Millisecond))
			select {
			case <-ctx.Done():
				res.errs = append(res.errs, ctx.Err())
				humanDone <- res
				return
			case <-time.After(min(gap, time.Second)):
			}
			r, err := get(ctx, c, base+"/data", map[string]string{
				"X-Test-Client": "human", "X-Flowlock-Risk": "spoofed", "X-Flowlock-Admin": "1",
			})
			if err != nil {
				res.errs = append(res.errs, err)
				continue
			}
			res.got = append(res.got, r)
		}
		humanDone <- res
	}()

	// The bot: one request every 75 ms until denied. It tries to choose the
	// path and the address Flow Lock sees.
	bot := from(botAddr)
	botHeaders := map[string]string{
		"X-Test-Client":   "bot",
		"X-Original-URI":  "/healthz",
		"X-Forwarded-Uri": "/healthz",
		"X-Real-IP":       "203.0.113.1",
	}
	tick := time.NewTicker(75 * time.Millisecond)
	var denied response
	n := 0
	for n = 1; n <= 40; n++ {
		<-tick.C
		r, err := get(ctx, bot, base+"/data", botHeaders)
		if err != nil {
			t.Fatalf("bot request %d: %v", n, err)
		}
		if r.status != http.StatusOK {
			denied = r
			break
		}
		if r.body != upstreamBody {
			t.Fatalf("bot request %d: 200 with body %q, want the upstream's", n, r.body)
		}
	}
	tick.Stop()
	if n > 40 {
		t.Fatal("fixed-interval bot not denied within 40 requests")
	}
	t.Logf("bot denied at request %d: %d %v %s", n, denied.status, denied.header, denied.body)
	checkDeny(t, denied)
	if r, err := get(ctx, bot, base+"/data", botHeaders); err != nil || r.status != http.StatusForbidden {
		t.Errorf("bot's next request: %d, %v; want 403 (quarantined)", r.status, err)
	}
	if got := len(up.requests("bot")); got != n-1 {
		t.Errorf("upstream saw %d bot requests, want the %d before the deny", got, n-1)
	}
	checkRisk(t, "bot", up.requests("bot"), px.stripsPrefix)

	res := <-humanDone
	if len(res.errs) > 0 {
		t.Errorf("human-like client: errors %v", res.errs)
	}
	for i, r := range res.got {
		if r.status != http.StatusOK || r.body != upstreamBody {
			t.Errorf("human-like request %d: %d %q; want the upstream's 200", i+1, r.status, r.body)
		}
	}
	seen := up.requests("human")
	if len(seen) != humanRequests {
		t.Errorf("upstream saw %d human requests, want %d", len(seen), humanRequests)
	}
	checkRisk(t, "human", seen, px.stripsPrefix)

	// Flow Lock told the two apart, by their own addresses: not the
	// proxy's, and not the address the bot claimed.
	q := api(t, fl, "/api/v1/quarantine")
	if !strings.Contains(q, `"`+botAddr+`"`) || strings.Contains(q, `"`+humanAddr+`"`) ||
		strings.Contains(q, `"127.0.0.1"`) || strings.Contains(q, "203.0.113.1") {
		t.Errorf("quarantine = %s; want the bot's address %s only", q, botAddr)
	}
	if ids := api(t, fl, "/api/v1/identities"); !strings.Contains(ids, `"`+humanAddr+`"`) {
		t.Errorf("identities = %s; want the human's address %s tracked", ids, humanAddr)
	}
}

// checkDeny checks a deny as the client sees it: Flow Lock's 403, with
// Retry-After and its JSON body, and no internal header.
func checkDeny(t *testing.T, r response) {
	t.Helper()
	if r.status != http.StatusForbidden {
		t.Fatalf("bot denied with status %d, want 403: %v %s", r.status, r.header, r.body)
	}
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || retry < 1 {
		t.Errorf("Retry-After = %q, want whole seconds >= 1", r.header.Get("Retry-After"))
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Error      string `json:"error"`
		Reason     string `json:"reason"`
		RetryAfter int    `json:"retry_after"`
	}
	dec := json.NewDecoder(strings.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("deny body %q: %v", r.body, err)
	}
	if body.Error != "quarantined" || body.Reason == "" || body.RetryAfter != retry {
		t.Errorf("deny body = %+v; want quarantined, a reason, retry_after = Retry-After (%d)", body, retry)
	}
	if v := r.header.Get("X-Flowlock-Deny-Body"); v != "" {
		t.Errorf("client sees X-Flowlock-Deny-Body: %q", v)
	}
}

// checkRisk checks that every request reached the upstream with Flow
// Lock's score, whatever the client sent, and, if the proxy strips by
// prefix, no other X-Flowlock-* header.
func checkRisk(t *testing.T, who string, seen []http.Header, stripsPrefix bool) {
	t.Helper()
	for i, h := range seen {
		risk := h.Values("X-Flowlock-Risk")
		if n, err := strconv.Atoi(strings.Join(risk, ",")); err != nil || n < 0 || n > 100 {
			t.Errorf("%s request %d reached the upstream with X-Flowlock-Risk %q, want one score 0-100", who, i+1, risk)
		}
		for k := range h {
			if k != "X-Flowlock-Risk" && stripsPrefix {
				t.Errorf("%s request %d reached the upstream with %s: %q", who, i+1, k, h[k])
			}
		}
	}
}

// hostileRequest sends a header value that Flow Lock's HTTP server refuses
// (a control byte; Go's http.Client will not even send it, so it is
// written by hand). Whatever the proxy does with it, the request must not
// reach the upstream: a refused check is not a pass.
func hostileRequest(t *testing.T, up *upstream, base string) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(hostileAddr)}, Timeout: 2 * time.Second}
	conn, err := d.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /data HTTP/1.1\r\nHost: api\r\nX-Test-Client: hostile\r\nX-Junk: a\x01b\r\nConnection: close\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(conn)
	status, _, _ := strings.Cut(string(raw), "\r\n")
	if strings.HasPrefix(status, "HTTP/1.1 2") || status == "" {
		t.Errorf("request with a control byte: %q; want a refusal", status)
	}
	if n := len(up.requests("hostile")); n != 0 {
		t.Errorf("request with a control byte reached the upstream (%d times) past a refused check", n)
	}
}

// flowlockDown stops Flow Lock and sends one more request: a fail-open
// config lets it through unchecked (no X-Flowlock-Risk, the client's forged
// one dropped too); a fail-closed one answers 5xx.
func flowlockDown(t *testing.T, px proxyUnderTest, fl *flowlocktest.Service, up *upstream, base string) {
	t.Helper()
	fl.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r, err := get(ctx, from(humanAddr), base+"/data", map[string]string{"X-Test-Client": "unchecked", "X-Flowlock-Risk": "spoofed"})
	if err != nil {
		t.Fatalf("request with Flow Lock down: %v", err)
	}
	seen := up.requests("unchecked")
	if px.failOpen {
		if r.status != http.StatusOK || r.body != upstreamBody || len(seen) != 1 {
			t.Fatalf("Flow Lock down: %d %q, upstream saw %d; want the upstream's 200 (fail open)", r.status, r.body, len(seen))
		}
		if len(seen[0]) != 0 {
			t.Errorf("unchecked request reached the upstream with %v, want no X-Flowlock-* header", seen[0])
		}
		return
	}
	if r.status < 500 || len(seen) != 0 {
		t.Errorf("Flow Lock down: %d, upstream saw %d; want a 5xx and nothing upstream (fail closed)", r.status, len(seen))
	}
}

// startNginx runs deploy/nginx/nginx.conf as it is, but for its three
// documented addresses, with a prefix directory of its own.
func startNginx(t *testing.T, bin, forwardAuth, upstream string) string {
	t.Helper()
	return startNginxDecoy(t, bin, forwardAuth, upstream, "127.0.0.1:8090")
}

// startNginxDecoy is startNginx with the decoy upstream of the honeypot
// (--quarantine-action honeypot) at decoy.
func startNginxDecoy(t *testing.T, bin, forwardAuth, upstream, decoy string) string {
	t.Helper()
	dir := t.TempDir()
	port := flowlocktest.FreePort(t)
	b, err := os.ReadFile(deployFile("nginx/nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	conf := string(b)
	for _, r := range [][2]string{
		{"listen 8000;", "listen 127.0.0.1:" + port + ";"},
		{"server 127.0.0.1:9192;", "server " + forwardAuth + ";"},
		{"server 127.0.0.1:8081;", "server " + upstream + ";"},
		{"server 127.0.0.1:8090;", "server " + decoy + ";"},
	} {
		if n := strings.Count(conf, r[0]); n != 1 {
			t.Fatalf("deploy/nginx/nginx.conf has %q %d times; the test replaces it and wants it once", r[0], n)
		}
		conf = strings.Replace(conf, r[0], r[1], 1)
	}
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	global := "daemon off; pid nginx.pid;"
	if os.Geteuid() == 0 {
		global += " user root;" // workers would drop to nobody, who cannot enter the test's directory
	}
	errorLog := filepath.Join(dir, "error.log")
	p := startProcess(t, dir, bin, nil, "-p", dir+"/", "-c", "nginx.conf", "-e", errorLog, "-g", global)
	p.ShowOnFailure(errorLog, filepath.Join(dir, "access.log"))
	waitListening(t, p, "127.0.0.1:"+port)
	return "http://127.0.0.1:" + port
}

// startCaddy runs deploy/caddy/Caddyfile as it is, with its addresses from
// the environment and its state in a directory of its own.
func startCaddy(t *testing.T, bin, forwardAuth, upstream string) string {
	t.Helper()
	return startCaddyTrusting(t, bin, forwardAuth, upstream, "")
}

// startCaddyTrusting is startCaddy with FLOWLOCK_CADDY_TRUSTED_PROXIES set
// to trusted.
func startCaddyTrusting(t *testing.T, bin, forwardAuth, upstream, trusted string) string {
	t.Helper()
	dir := t.TempDir()
	port := flowlocktest.FreePort(t)
	env := []string{
		"HOME=" + dir, "XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"CADDY_ADMIN=off",
		"FLOWLOCK_LISTEN_HOST=127.0.0.1", "FLOWLOCK_LISTEN_PORT=" + port,
		"FLOWLOCK_FORWARD_AUTH=" + forwardAuth, "FLOWLOCK_UPSTREAM=" + upstream,
		"FLOWLOCK_CADDY_TRUSTED_PROXIES=" + trusted,
	}
	p := startProcess(t, dir, bin, env, "run", "--config", deployFile("caddy/Caddyfile"), "--adapter", "caddyfile")
	waitListening(t, p, "127.0.0.1:"+port)
	return "http://127.0.0.1:" + port
}

// startHAProxy runs deploy/haproxy/haproxy.cfg and flowlock.lua as they
// are, with addresses from the environment, in the foreground.
func startHAProxy(t *testing.T, bin, forwardAuth, upstream string) string {
	t.Helper()
	return startHAProxyDecoy(t, bin, forwardAuth, upstream, "127.0.0.1:8090")
}

// startHAProxyDecoy is startHAProxy with the decoy backend of the honeypot
// (--quarantine-action honeypot) at decoy.
func startHAProxyDecoy(t *testing.T, bin, forwardAuth, upstream, decoy string) string {
	t.Helper()
	dir := t.TempDir()
	port := flowlocktest.FreePort(t)
	env := []string{
		"FLOWLOCK_LUA=" + deployFile("haproxy/flowlock.lua"),
		"FLOWLOCK_LISTEN_HOST=127.0.0.1", "FLOWLOCK_LISTEN_PORT=" + port,
		"FLOWLOCK_FORWARD_AUTH=" + forwardAuth, "FLOWLOCK_UPSTREAM=" + upstream,
		"FLOWLOCK_DECOY=" + decoy,
	}
	p := startProcess(t, dir, bin, env, "-f", deployFile("haproxy/haproxy.cfg"), "-db")
	waitListening(t, p, "127.0.0.1:"+port)
	return "http://127.0.0.1:" + port
}
