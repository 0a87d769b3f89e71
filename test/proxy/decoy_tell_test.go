package proxy

import (
	"bufio"
	"net"
	"net/textproto"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// TestDecoyTellBehindProxies (from the w3 review): one request must not
// tell the decoy from the API through a proxy shipped in deploy/. Each
// proxy is run twice with Flow Lock's forward-auth in front: once with the
// built sample-api as its upstream, once with the built flowlock-honeypot
// (docker-compose.yml's flags) in that place, as a quarantined client
// reaches it. sample-api, like most handlers off their routes, never
// reads the request body, and net/http then answers without it; the decoy
// must do the same, or:
//   - a POST that declares 500 kB and sends 1 kB: sample-api answers at
//     once (256 KiB or more left unread: answer and close); a decoy that
//     reads the body waits for it until its 10 s read timeout;
//   - Expect: 100-continue: sample-api answers at once; a decoy that reads
//     the body first sends "100 Continue".
//
// HAProxy passes both through (this failed before the decoy stopped
// reading bodies); nginx buffers the request body before it asks the
// upstream, which hides both. Envoy, the demo's proxy, streams bodies
// like HAProxy (its own 100-continue handling hides the second case).
func TestDecoyTellBehindProxies(t *testing.T) {
	endToEnd(t)
	for _, px := range []struct {
		name, bin string
		start     func(t *testing.T, bin, forwardAuth, upstream, decoy string) string
	}{
		{"haproxy", "haproxy", startHAProxyDecoy},
		{"nginx", "nginx", startNginxDecoy},
	} {
		t.Run(px.name, func(t *testing.T) { decoyTell(t, tool(t, px.bin), px.start) })
	}
}

func decoyTell(t *testing.T, bin string, start func(t *testing.T, bin, forwardAuth, upstream, decoy string) string) {
	api := startBinary(t, "sample-api", "--addr", "127.0.0.1:"+flowlocktest.FreePort(t))
	decoy := startBinary(t, "flowlock-honeypot", composeHoneypotArgs(t,
		"127.0.0.1:"+flowlocktest.FreePort(t), "127.0.0.1:"+flowlocktest.FreePort(t))...)
	fl := startFlowlock(t, "--forward-auth-addr", "127.0.0.1:0", "--trusted-proxies", "127.0.0.1/32")
	viaAPI := start(t, bin, fl.ForwardAuthAddr, api, decoy)
	viaDecoy := start(t, bin, fl.ForwardAuthAddr, decoy, decoy)

	for name, raw := range map[string]string{
		"large body declared": "POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/octet-stream\r\n" +
			"Content-Length: 500000\r\n\r\n" + strings.Repeat("x", 1000),
		"expect 100-continue": "POST /login HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\n" +
			"Content-Length: 20\r\nExpect: 100-continue\r\n\r\n",
	} {
		if a, d := firstLine(t, viaAPI, raw), firstLine(t, viaDecoy, raw); a != d {
			t.Errorf("%s: through the proxy sample-api answers %q, the decoy %q", name, a, d)
		}
	}
}

func firstLine(t *testing.T, base, raw string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second)) // the write too: a stalled proxy must not hang the test
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	line, err := textproto.NewReader(bufio.NewReader(c)).ReadLine()
	if err != nil {
		return "(no answer within 3s)"
	}
	return line
}
