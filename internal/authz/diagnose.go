package authz

import (
	"fmt"
	"net/netip"
	"strings"
)

// Cause is what a proxy sent, or failed to send, that kept ClientRules
// from reading the client the configured way. Fallback is the coarse
// version that the metric counts; a Cause is precise enough to tell the
// operator what to change (Explain). None of them can be caused by a
// client on purpose: what a client writes into X-Forwarded-For stands left
// of what the proxies append and is never reached, so a Cause that repeats
// is a configuration problem.
type Cause uint8

// Causes, in the order the log and the dashboard list them.
const (
	CauseNone Cause = iota
	// CauseNoForwardedFor: X-Forwarded-For was expected (the peer is a
	// trusted proxy, or --xff-trusted-hops is set) and the request had
	// none. The request is allowed unscored.
	CauseNoForwardedFor
	// CauseShortForwardedFor: X-Forwarded-For has fewer entries than
	// --xff-trusted-hops skips. Allowed unscored.
	CauseShortForwardedFor
	// CauseAllTrusted: every X-Forwarded-For entry is a trusted proxy, so
	// no client is left: the client runs at a trusted address (on the
	// proxy's own host) or --trusted-proxies is too wide. Allowed unscored.
	CauseAllTrusted
	// CauseBadForwardedFor: an X-Forwarded-For entry that had to be read
	// is not an IP address. Allowed unscored.
	CauseBadForwardedFor
	// CauseNoSource: no source address and no other way to the client.
	// Allowed unscored.
	CauseNoSource
	// CauseBadIdentityHeader: the identity header is empty, too long or
	// not printable; the request is scored by its address instead.
	CauseBadIdentityHeader
	// CauseNoIdentityHeader: --identity-header is set and the request did
	// not carry it; it is scored by its address. Normal for some requests,
	// a misconfiguration when no request carries it (see Watched).
	CauseNoIdentityHeader
	// CauseNoClaim: --identity-jwt-claim is set and the request's
	// metadata_context had no such claim; it is scored by the next rule.
	// Normal for anonymous requests, a misconfiguration when no request
	// has it (ext_authz without metadata_context_namespaces).
	CauseNoClaim
	// CauseBadClaim: the claim is present but not a usable identity.
	CauseBadClaim
	// CauseNoFingerprint: --identity composes the fingerprint and the
	// request carried none (a plain-HTTP request, or a proxy that does not
	// set --fingerprint-header); it is scored by address.
	CauseNoFingerprint

	numCauses
)

// Causes returns every cause, CauseNone first.
func Causes() []Cause { return values(numCauses) }

// String returns the cause's name, as the log and the dashboard show it.
func (c Cause) String() string {
	switch c {
	case CauseNoForwardedFor:
		return "no_forwarded_for"
	case CauseShortForwardedFor:
		return "short_forwarded_for"
	case CauseAllTrusted:
		return "forwarded_for_all_trusted"
	case CauseBadForwardedFor:
		return "bad_forwarded_for"
	case CauseNoSource:
		return "no_source_address"
	case CauseBadIdentityHeader:
		return "bad_identity_header"
	case CauseNoIdentityHeader:
		return "no_identity_header"
	case CauseNoClaim:
		return "no_jwt_claim"
	case CauseBadClaim:
		return "bad_jwt_claim"
	case CauseNoFingerprint:
		return "no_fingerprint"
	default:
		return "none"
	}
}

// Unscored reports whether requests with this cause are let through
// without timing, the worst outcome: detection is off for them.
func (c Cause) Unscored() bool {
	return c >= CauseNoForwardedFor && c <= CauseNoSource
}

// OnlyWhenEvery reports whether the cause is a misconfiguration only when
// every request shows it, not when some do: anonymous requests without an
// API key are normal beside keyed ones.
func (c Cause) OnlyWhenEvery() bool {
	return c == CauseNoIdentityHeader || c == CauseNoClaim || c == CauseNoFingerprint
}

// Explain says, for an operator, what requests with cause c coming from
// peer (the proxy, or the client when there is none; may be invalid) mean
// under these rules, and what to change. Both are plain sentences naming
// the settings; they hold no request data beyond the peer address. It
// allocates, and is meant for a log line or a banner, never the Check path.
func (r *ClientRules) Explain(c Cause, peer netip.Addr) (problem, fix string) {
	from := "a peer with no address"
	if peer.IsValid() {
		from = peer.String()
	}
	proxyRule := ""
	if p, ok := r.trustedPrefix(peer); ok {
		proxyRule = fmt.Sprintf("--trusted-proxies says %s is a proxy", p)
	}
	hops := fmt.Sprintf("--xff-trusted-hops=%d", r.XFFTrustedHops)
	lost := ": they are allowed without being scored, so bots behind it are never caught"
	switch c {
	case CauseNoForwardedFor:
		why := hops + " expects a proxy to append one"
		if proxyRule != "" {
			why = proxyRule
		}
		return "requests from " + from + " carry no X-Forwarded-For, but " + why + lost,
			"make the proxy at " + from + " send the client's address in X-Forwarded-For (nginx: proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; Envoy: use_remote_address: true); " +
				"if clients connect from " + from + " directly, take it out of --trusted-proxies (and set --xff-trusted-hops=0), or put them behind the proxy"
	case CauseShortForwardedFor:
		return "requests from " + from + " carry fewer X-Forwarded-For entries than " + hops + " skips" + lost,
			"set --xff-trusted-hops to the number of proxies in front of the one that calls Flow Lock (Envoy's xff_num_trusted_hops), not counting that proxy"
	case CauseAllTrusted:
		return "every X-Forwarded-For entry of requests from " + from + " is a trusted proxy (--trusted-proxies " + r.proxyList() + "), so no client is left" + lost,
			"narrow --trusted-proxies to your proxies' own addresses; if the clients run on the proxy's host (a local test), send them from an address outside --trusted-proxies"
	case CauseBadForwardedFor:
		return "requests from " + from + " carry an X-Forwarded-For entry that is not an IP address where the client should be" + lost,
			"make the proxy at " + from + " append the client's bare address (no \"unknown\", no host names), or check --xff-trusted-hops"
	case CauseNoSource:
		return "requests arrive with no source address" + lost,
			"send the client's address as the source (Envoy's ext_authz does: attributes.source.address), or configure --trusted-proxies with X-Forwarded-For"
	case CauseBadIdentityHeader:
		return "requests from " + from + " carry a " + r.IdentityHeader + " header (--identity-header) that is empty, longer than 128 bytes or not printable: they are scored by address instead",
			"check what sets " + r.IdentityHeader + " at the proxy; its value must be 1-128 printable characters"
	case CauseNoIdentityHeader:
		return "no request from " + from + " carries the " + r.IdentityHeader + " header that --identity-header names: every client is scored by address",
			"make the proxy forward " + r.IdentityHeader + " to Flow Lock (Envoy: it is in the CheckRequest unless allowed_headers drops it), or drop --identity-header"
	case CauseNoClaim:
		return "no request from " + from + " carries the verified JWT claim that --identity-jwt-claim names (" + r.claimWhere() + "): every client is scored by address",
			"verify tokens with Envoy's jwt_authn filter (payload_in_metadata: " + r.payloadKey() + ") and list " + r.ClaimNamespace + " in the ext_authz filter's metadata_context_namespaces (see deploy/envoy.yaml), or drop --identity-jwt-claim"
	case CauseBadClaim:
		return "requests from " + from + " carry the JWT claim " + r.claimWhere() + " with a value that is not a string or integer of 1-128 printable characters: they are scored by address instead",
			"name a claim that identifies the caller (sub, or a nested one such as act.sub) in --identity-jwt-claim"
	case CauseNoFingerprint:
		return "no request from " + from + " carries the " + r.FingerprintHeader + " header (--fingerprint-header) that --identity " + r.Compose.String() + " needs: every client is scored by address",
			"enable JA4 in Envoy's tls_inspector and add " + r.FingerprintHeader + ": %TLS_JA4_FINGERPRINT% with request_headers_to_add (see deploy/envoy.yaml); fingerprints exist only on TLS listeners"
	}
	return "", ""
}

// claimWhere writes where the claim is read, for Explain.
func (r *ClientRules) claimWhere() string {
	return "metadata_context " + r.ClaimNamespace + " " + strings.Join(r.ClaimPath, ".")
}

// payloadKey is the payload_in_metadata key the claim is read under.
func (r *ClientRules) payloadKey() string {
	if len(r.ClaimPath) == 0 {
		return ""
	}
	return r.ClaimPath[0]
}

// trustedPrefix returns the --trusted-proxies entry that contains a.
func (r *ClientRules) trustedPrefix(a netip.Addr) (netip.Prefix, bool) {
	if !a.IsValid() {
		return netip.Prefix{}, false
	}
	for _, p := range r.TrustedProxies {
		if p.Contains(a) {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

// proxyList writes --trusted-proxies as given, shortened past a few.
func (r *ClientRules) proxyList() string {
	const shown = 4
	var b strings.Builder
	for i, p := range r.TrustedProxies {
		if i == shown {
			fmt.Fprintf(&b, ",… (%d in all)", len(r.TrustedProxies))
			break
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(p.String())
	}
	return b.String()
}
