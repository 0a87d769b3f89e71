package authz

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// ForwardAuthOptions configure the HTTP forward-auth handler.
type ForwardAuthOptions struct {
	Policy *Policy
	// Rules find the client. The peer of a forward-auth request is the
	// proxy, so X-Forwarded-For and X-Real-IP are read only when the peer
	// is one of Rules.TrustedProxies; with none, every request is the
	// proxy's own (NewForwardAuth warns about that).
	Rules    ClientRules
	Now      func() time.Time // nil means time.Now
	Recorder Recorder         // nil records nothing
	Logger   *slog.Logger     // nil discards
	// Tarpit holds the answers of quarantined clients under
	// ActionTarpit; nil answers at once (see ServerOptions.Tarpit).
	Tarpit *Tarpit
}

// Request and response headers of the forward-auth protocol, in the
// canonical form net/http stores them under.
const (
	hdrForwardedFor    = "X-Forwarded-For"
	hdrRealIP          = "X-Real-Ip"          // nginx: proxy_set_header X-Real-IP $remote_addr
	hdrOriginalURI     = "X-Original-Uri"     // nginx auth_request
	hdrForwardedURI    = "X-Forwarded-Uri"    // Caddy forward_auth, Traefik ForwardAuth, deploy/haproxy
	hdrForwardedMethod = "X-Forwarded-Method" // Caddy, Traefik, deploy/haproxy
	hdrOriginalMethod  = "X-Original-Method"  // nginx, by convention

	hdrRisk     = "X-Flowlock-Risk"
	hdrError    = "X-Flowlock-Error"
	hdrDenyBody = "X-Flowlock-Deny-Body"
)

// checkPath is the forward-auth endpoint. Every path under it is the same
// endpoint with the original request path appended, as Envoy's HTTP
// ext_authz sends it with path_prefix: /check.
const checkPath = "/check"

// Shared header values; net/http only reads them. Each slice has cap 1, so
// an append by a wrapping middleware copies instead of writing into them.
var (
	riskValues = func() (v [101][]string) {
		for s := range v {
			v[s] = []string{strconv.Itoa(s)}
		}
		return v
	}()
	jsonValue    = []string{"application/json"}
	noStoreValue = []string{"no-store"}
	oneValue     = []string{"1"}
)

// ForwardAuth answers HTTP forward-auth checks on /check and every path
// under it, for proxies that cannot speak ext_authz gRPC: nginx
// auth_request, Caddy forward_auth, Traefik ForwardAuth, HAProxy through
// deploy/haproxy/flowlock.lua, and Envoy's HTTP ext_authz with
// path_prefix: /check. It decides with the same Policy and ClientRules as
// Server, and answers:
//
//   - 200 to allow, with X-Flowlock-Risk: <0-100> for the proxy to copy to
//     the upstream, and no body;
//   - 403 to deny, with Retry-After, Content-Type: application/json, the
//     DenyBody JSON as the body, and the same JSON in X-Flowlock-Deny-Body
//     for proxies that drop the body of an auth response (nginx);
//   - under --quarantine-action honeypot, 200 for a quarantined client
//     too, with X-Flowlock-Route: honeypot for the proxy to route the
//     request to a decoy upstream (deploy/nginx/honeypot.conf); under
//     tarpit, the 403 after Tarpit.Hold;
//   - never another status for a decision: nginx turns anything but 2xx,
//     401 and 403 into a 500 for the client.
//
// The request being checked is described by headers the proxy sets: the
// path from X-Original-URI (nginx) or X-Forwarded-Uri (Caddy, Traefik,
// HAProxy), or else from the path after /check (Envoy); the method from
// X-Forwarded-Method or X-Original-Method, or else the check's own method.
// The client is found by ClientRules with the peer (the proxy) as the
// source: X-Forwarded-For, or X-Real-IP when X-Forwarded-For is absent, is
// read only when the peer is a trusted proxy. The proxy must overwrite
// these headers rather than pass the client's own; the configs in deploy/
// do.
//
// A forward-auth proxy has no failure mode to fall back on: a 5xx from Flow
// Lock would reach the client (Caddy, Traefik) or become a 500 (nginx). So
// Flow Lock fails open itself: if deciding panics, the panic is logged, the
// check is recorded as failed, and the request is allowed with
// X-Flowlock-Error: 1 and no X-Flowlock-Risk. A bot-timing filter must not
// take the API down with it.
type ForwardAuth struct {
	policy *Policy
	rules  ClientRules
	// plain are rules with the identity header and IPv6 grouping only:
	// for an address that is already the client (X-Real-IP, an untrusted
	// peer), where no proxy list or hop count applies.
	plain ClientRules
	idKey string // canonical identity header name, "" for none
	fpKey string // canonical fingerprint header name, "" for none
	now   func() time.Time
	rec   Recorder
	log   *slog.Logger

	tarpit *Tarpit // see ForwardAuthOptions.Tarpit
}

var _ http.Handler = (*ForwardAuth)(nil)

// NewForwardAuth returns the HTTP forward-auth handler over o.Policy. It
// logs a warning when o.Rules trusts no proxy, since the peer of every check
// is then the one identity scored.
func NewForwardAuth(o ForwardAuthOptions) *ForwardAuth {
	f := &ForwardAuth{
		policy: o.Policy,
		rules:  o.Rules,
		plain: ClientRules{IdentityHeader: o.Rules.IdentityHeader, IPv6Prefix: o.Rules.IPv6Prefix,
			FingerprintHeader: o.Rules.FingerprintHeader, Compose: o.Rules.Compose},
		now:    o.Now,
		rec:    o.Recorder,
		log:    o.Logger,
		tarpit: o.Tarpit,
	}
	// No claim reaches forward-auth (there is no metadata_context), so
	// none is looked for, nor counted missing on every check.
	f.rules.ClaimNamespace, f.rules.ClaimPath = "", nil
	if o.Rules.IdentityHeader != "" {
		f.idKey = http.CanonicalHeaderKey(o.Rules.IdentityHeader)
	}
	if o.Rules.FingerprintHeader != "" {
		f.fpKey = http.CanonicalHeaderKey(o.Rules.FingerprintHeader)
	}
	if f.now == nil {
		f.now = time.Now
	}
	if f.rec == nil {
		f.rec = nopRecorder{}
	}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	f.log = f.log.With("component", "forward_auth")
	if len(o.Rules.TrustedProxies) == 0 {
		f.log.Warn("no trusted proxies: X-Forwarded-For and X-Real-IP are ignored, so every check is scored as the proxy's own address; set --trusted-proxies to the proxy's address")
	}
	return f
}

// ServeHTTP answers one forward-auth check.
func (f *ForwardAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	suffix, ok := checkSuffix(r)
	if !ok {
		// Not a decision: a proxy pointed at the wrong path. nginx turns
		// this into a 500, which makes the mistake visible at once.
		http.Error(w, "flowlock: the forward-auth endpoint is "+checkPath, http.StatusNotFound)
		return
	}
	start := f.now()
	written := false
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler { // net/http's way to abort a response: not ours to swallow
				panic(v)
			}
			f.log.Error("check panicked", "panic", v, "stack", string(debug.Stack()))
			recordFailed(f.rec, f.policy, start)
			if !written {
				w.Header()[hdrError] = oneValue
				w.WriteHeader(http.StatusOK)
			}
		}
	}()

	h := r.Header
	client, peer := f.client(r)
	path := lastValue(h, hdrOriginalURI)
	if path == "" {
		path = lastValue(h, hdrForwardedURI)
	}
	if path == "" {
		path = suffix
	}

	d := f.policy.Decide(Request{Client: client, Path: path, Now: start, UserAgent: lastValue(h, "User-Agent")})

	if f.log.Enabled(r.Context(), slog.LevelDebug) {
		method := lastValue(h, hdrForwardedMethod)
		if method == "" {
			method = lastValue(h, hdrOriginalMethod)
		}
		if method == "" {
			method = r.Method
		}
		f.log.LogAttrs(r.Context(), slog.LevelDebug, "check",
			slog.String("identity", client.ID.Masked()), slog.String("method", method), slog.String("path", path),
			slog.String("decision", d.Outcome.String()), slog.Bool("allow", d.Allow), slog.Int("score", int(d.Score)),
			slog.String("reason", d.Reason), slog.String("fallback", client.Fallback.String()))
	}
	took := time.Since(start) // the decision's own time, without a tarpit hold
	if d.Action == ActionTarpit {
		ctx, cancel := context.WithTimeout(r.Context(), ForwardAuthHoldLimit)
		f.tarpit.Hold(ctx)
		cancel()
	}
	if d.Allow || d.Action == ActionHoneypot {
		out := w.Header()
		out[hdrRisk] = riskValues[min(d.Score, 100)]
		if !d.Allow {
			out[hdrRoute] = routeHoneypotValues
		}
		written = true
		w.WriteHeader(http.StatusOK)
	} else {
		deny := cachedHTTPDeny(d)
		out := w.Header()
		out["Retry-After"] = deny.retryAfter
		out["Content-Type"] = jsonValue
		out["Cache-Control"] = noStoreValue
		out[hdrDenyBody] = deny.bodyHeader
		written = true
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write(deny.body) // the proxy may have gone; nothing to do about it
	}
	f.rec.RecordCheck(Record{
		Outcome: d.Outcome, Mode: f.policy.Mode(), Score: d.Score, Detector: d.Detector,
		Fallback: client.Fallback, Cause: client.Cause, Peer: peer,
		Excluded: d.Excluded, Start: start, Duration: took,
	})
}

// httpDeny is a forward-auth deny's varying parts, immutable once built and
// shared through httpDenies (see responseCache): net/http only reads
// header values and the body.
type httpDeny struct {
	retryAfter []string // Retry-After
	bodyHeader []string // X-Flowlock-Deny-Body: the body as ASCII
	body       []byte
}

// cachedHTTPDeny returns the deny answer for d, from the cache when the
// same answer was built recently.
func cachedHTTPDeny(d Decision) *httpDeny {
	k := denyKeyOf(d)
	k.score = 0 // not in a forward-auth answer
	if deny, ok := httpDenies.load(k); ok {
		return deny
	}
	body := DenyBody(d)
	deny := &httpDeny{
		retryAfter: []string{strconv.Itoa(max(d.RetryAfter, 1))},
		bodyHeader: []string{asciiJSON(body)},
		body:       []byte(body),
	}
	httpDenies.store(k, deny)
	return deny
}

// client finds the client behind a check. The peer is the proxy: forwarded
// addresses are believed only when it is a trusted proxy, and then
// X-Forwarded-For goes through ClientRules (trusted entries and hops
// skipped), or, when the proxy sent none, X-Real-IP is the client. It
// returns the peer too, for the diagnosis of a misconfigured proxy.
func (f *ForwardAuth) client(r *http.Request) (Client, netip.Addr) {
	peer := peerAddr(r.RemoteAddr)
	var idh string
	if f.idKey != "" {
		idh = lastValue(r.Header, f.idKey)
	}
	// A forward-auth request carries no Envoy metadata, so never a
	// verified claim: a proxy that verifies tokens passes the subject in
	// --identity-header instead (README). The fingerprint is a header the
	// proxy sets from the TLS handshake it terminated.
	var fp string
	if f.fpKey != "" {
		fp = lastValue(r.Header, f.fpKey)
	}
	if !peer.IsValid() || !f.rules.trusted(peer) {
		return f.plain.ResolveWith(peer, "", idh, "", fp), peer
	}
	xff := forwardedFor(r.Header)
	if xff == "" {
		if rip := lastValue(r.Header, hdrRealIP); rip != "" {
			if a, ok := parseForwarded(strings.TrimSpace(rip)); ok {
				return f.plain.ResolveWith(a, "", idh, "", fp), peer
			}
		}
	}
	// With no usable header there is no client identity (never the proxy's
	// own address); Resolve says why.
	return f.rules.ResolveWith(peer, xff, idh, "", fp), peer
}

// checkSuffix reports whether r is for /check or a path under it, and
// returns the rest of the request target after /check when it is a path
// (Envoy's original path and query), "" otherwise.
func checkSuffix(r *http.Request) (string, bool) {
	p := r.URL.Path
	if p != checkPath && !strings.HasPrefix(p, checkPath+"/") {
		return "", false
	}
	// The raw target keeps the original encoding and query, as Envoy's
	// :path does for the gRPC Check.
	if rest, ok := strings.CutPrefix(r.RequestURI, checkPath); ok && strings.HasPrefix(rest, "/") {
		return rest, true
	}
	if len(p) > len(checkPath) {
		return p[len(checkPath):], true
	}
	return "", true
}

// peerAddr reads the address of the connection's peer, or the zero Addr.
func peerAddr(remote string) netip.Addr {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(remote); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

// lastValue returns the last value of a header by canonical name: when a
// proxy appends its own copy of a header after the client's, the nearest
// proxy's wins.
func lastValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

// forwardedFor returns X-Forwarded-For as one list. Repeated header lines
// are one list in order (RFC 9110 §5.3); joining them allocates, which only
// happens when a proxy appends a line instead of extending the value.
func forwardedFor(h http.Header) string {
	v := h[hdrForwardedFor]
	switch len(v) {
	case 0:
		return ""
	case 1:
		return v[0]
	}
	return strings.Join(v, ",")
}

// asciiJSON escapes every non-ASCII rune and DEL of a JSON text as \uXXXX,
// so that it can travel in a header value (visible ASCII by RFC 9110) and
// still decode to the same value. encoding/json escapes the other control
// characters already. Only strings hold such runes in the JSON texts of
// DenyBody, so escaping them keeps the text valid.
func asciiJSON(s string) string {
	i := 0
	for i < len(s) && s[i] < 0x7f {
		i++
	}
	if i == len(s) {
		return s
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteString(s[:i])
	u16 := func(c rune) {
		b.WriteString(`\u`)
		b.WriteByte(hex[c>>12&0xf])
		b.WriteByte(hex[c>>8&0xf])
		b.WriteByte(hex[c>>4&0xf])
		b.WriteByte(hex[c&0xf])
	}
	for _, c := range s[i:] {
		switch {
		case c < 0x7f:
			b.WriteByte(byte(c))
		case c > 0xffff:
			c -= 0x10000
			u16(0xd800 + c>>10)
			u16(0xdc00 + c&0x3ff)
		default:
			u16(c) // includes U+FFFD for an invalid byte, as encoding/json would
		}
	}
	return b.String()
}
