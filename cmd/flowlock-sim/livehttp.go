package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// httpSender sends each request through an HTTP proxy (Envoy, nginx,
// Caddy, Traefik with Flow Lock in front of the API), or to a service
// behind the Go middleware. Without --source-ip it names the client in
// X-Forwarded-For, as a load balancer in front of the proxy would; with
// it, each client connects from its own address and names itself in
// nothing, so whatever is in front of Flow Lock sees the real peer.
type httpSender struct {
	base   string // target URL without a trailing slash
	client *http.Client
	bind   bool // connect from each request's address
	// clients has one client per address with bind, each with its own
	// connections; built before the run, then only read.
	clients map[netip.Addr]*http.Client
}

// parseSourceIP checks --source-ip: an address to connect from, with room
// for n clients after it. An IPv6 address serves one client only: the
// ones after ::1 are not on the loopback interface.
func parseSourceIP(s string, n int) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, usagef("--source-ip %q: want a local IP address such as 127.0.0.2 or ::1", s)
	}
	a = a.Unmap()
	if a.Is6() && n > 1 {
		return netip.Addr{}, usagef("--source-ip %s: an IPv6 source serves one client, not %d; use an IPv4 address such as 127.0.0.2", s, n)
	}
	if _, err := parseFirstAddr(a.String(), n); err != nil {
		return netip.Addr{}, usagef("--source-ip %s: %d clients do not fit after it", s, n)
	}
	return a, nil
}

// checkSource reports whether this host can connect from a, with a hint
// when it cannot: macOS has only 127.0.0.1 on its loopback interface until
// an alias is added.
func checkSource(a netip.Addr) error {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(a, 0).String())
	if err != nil {
		return fmt.Errorf("--source-ip %s: this host cannot send from that address (%w); on macOS add it to the loopback "+
			"interface with `sudo ifconfig lo0 alias %s up` (undo: `sudo ifconfig lo0 -alias %s`), or send from ::1 "+
			"with --source-ip ::1 to a target at http://[::1]:PORT", a, err, a, a)
	}
	return ln.Close()
}

// newHTTPSender checks the target URL and prepares a client with enough
// idle connections for the configured concurrency.
func newHTTPSender(o liveOptions) (*httpSender, error) {
	u, err := url.Parse(o.target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, usagef("--target %q: want an http:// or https:// URL without query, e.g. http://localhost:10000", o.target)
	}
	h := &httpSender{base: strings.TrimRight(o.target, "/")}
	if !o.bindSource {
		h.client = newHTTPClient(o, nil)
		return h, nil
	}
	if host, err := netip.ParseAddr(strings.Trim(u.Hostname(), "[]")); err == nil && host.Unmap().Is4() != o.firstAddr.Is4() {
		return nil, usagef("--source-ip %s cannot reach --target %s: one is IPv4, the other IPv6", o.firstAddr, o.target)
	}
	n := len(o.scenarios) * o.clients
	for _, a := range []netip.Addr{o.firstAddr, addrPlus(o.firstAddr, n-1)} {
		if err := checkSource(a); err != nil {
			return nil, err
		}
	}
	h.bind = true
	h.clients = make(map[netip.Addr]*http.Client, n)
	for i := range len(o.scenarios) {
		for k := range o.clients {
			a := o.addr(i, k)
			h.clients[a] = newHTTPClient(o, &net.TCPAddr{IP: a.AsSlice()})
		}
	}
	return h, nil
}

// newHTTPClient returns a client with enough idle connections for the
// configured concurrency, connecting from local unless it is nil.
func newHTTPClient(o liveOptions, local *net.TCPAddr) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = o.concurrency
	if local != nil {
		d := &net.Dialer{LocalAddr: local, Timeout: o.timeout, KeepAlive: 30 * time.Second}
		tr.DialContext = d.DialContext
		tr.MaxIdleConnsPerHost = min(o.concurrency, 4) // one client's connections
	}
	return &http.Client{
		Transport: tr,
		Timeout:   o.timeout,
		// A redirect is the upstream's answer; report it, do not follow.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Close drops idle connections.
func (h *httpSender) Close() error {
	if h.client != nil {
		h.client.CloseIdleConnections()
	}
	for _, c := range h.clients {
		c.CloseIdleConnections()
	}
	return nil
}

func (h *httpSender) send(ctx context.Context, r *liveRequest) outcome {
	req, err := http.NewRequestWithContext(ctx, r.method, h.base+r.path, nil)
	if err != nil {
		return outcome{kind: outFailed, score: -1, err: fmt.Errorf("build request: %w", err)}
	}
	c := h.client
	if h.bind {
		c = h.clients[r.addr]
	} else {
		req.Header.Set("X-Forwarded-For", r.addr.String())
	}
	req.Header.Set("User-Agent", r.userAgent)
	resp, err := c.Do(req)
	if err != nil {
		return outcome{kind: outFailed, score: -1, err: err}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // let the connection be reused
	return httpOutcome(resp, body)
}

// httpOutcome classifies a response: 403 with Retry-After is Flow Lock's
// deny, 429 with Retry-After its volume limit, anything else comes from
// the upstream (or the proxy).
func httpOutcome(resp *http.Response, body []byte) outcome {
	out := outcome{kind: outUpstream, status: resp.StatusCode, score: -1}
	retry := resp.Header.Get("Retry-After")
	switch {
	case resp.StatusCode == http.StatusForbidden && retry != "":
		out.kind = outDenied
	case resp.StatusCode == http.StatusTooManyRequests && retry != "":
		out.kind = outLimited
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		out.kind = outAllowed
		return out
	default:
		return out
	}
	out.retryAfter = retry
	var deny struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &deny) == nil {
		out.reason = deny.Reason
	}
	return out
}
