package authz

import (
	"net/netip"
	"strings"

	"github.com/flowlock/flowlock/internal/identity"
)

// ClientRules say how to find the client behind a request. The zero value
// uses the connection's source address only, which is right for an Envoy at
// the edge (use_remote_address: true) or a sidecar with no proxy in front.
type ClientRules struct {
	// TrustedProxies are the addresses of proxies in front of the caller
	// whose X-Forwarded-For entries are believed. X-Forwarded-For is read
	// only when the source address is one of them (or unknown), and is walked
	// from the right, skipping trusted entries; the first untrusted entry is
	// the client.
	TrustedProxies []netip.Prefix

	// XFFTrustedHops is the number of trusted proxies in front of the proxy
	// that calls Flow Lock: the same number as Envoy's xff_num_trusted_hops
	// or Istio's numTrustedProxies. That proxy appends the address it saw to
	// X-Forwarded-For, so the client is entry XFFTrustedHops+1 from the
	// right. 0 turns the rule off.
	XFFTrustedHops int

	// IdentityHeader, when set, names a lowercase request header (an API key
	// or a JWT subject forwarded by Envoy) whose value is the identity when
	// present and valid. Only use it for a header your proxy sets or checks:
	// a client-chosen value lets one client pose as many.
	IdentityHeader string

	// IPv6Prefix groups IPv6 clients by this many leading bits; 0 (or 128)
	// means no grouping. The service passes --ipv6-prefix (default 64).
	IPv6Prefix int

	// ClaimNamespace and ClaimPath say where a verified JWT claim is in
	// the CheckRequest's attributes.metadata_context (--identity-jwt-claim):
	// filter_metadata[ClaimNamespace] is the Struct that Envoy's jwt_authn
	// filter wrote (namespace envoy.filters.http.jwt_authn), ClaimPath[0]
	// is the provider's payload_in_metadata key, and the rest is the claim's
	// dotted path split at the dots ("act.sub" is act, sub). The claim, a
	// string or an integer, is the identity when present and valid: it
	// wins over IdentityHeader and the address, since Envoy verified it.
	// An empty ClaimPath reads no claim. It is never read from a header.
	ClaimNamespace string
	ClaimPath      []string

	// FingerprintHeader, when set, names the lowercase request header in
	// which the proxy passes the client's TLS fingerprint (JA4 or JA3,
	// from %TLS_JA4_FINGERPRINT% in Envoy's request_headers_to_add). Only
	// its hash is kept (identity.FingerprintKey). It is evidence for
	// --fingerprint-flag-after and, with Compose, part of the identity.
	FingerprintHeader string

	// Compose says how the identity of a client scored by address is made
	// (--identity): by address alone (the zero value), by fingerprint
	// alone, or by both. A request without a usable fingerprint is scored
	// by its address (FallbackNoFingerprint).
	Compose Compose
}

// Compose is the --identity setting: what the identity of a client without
// a claim or identity header is made of.
type Compose uint8

// Identity compositions.
const (
	// ComposeAddress keys a client by its address: one NAT is one client.
	ComposeAddress Compose = iota
	// ComposeFingerprint keys a client by its TLS fingerprint alone: a bot
	// that rotates addresses but keeps its TLS stack stays one client, and
	// every person on one browser build is one client too (see README).
	ComposeFingerprint
	// ComposeAddressFingerprint keys a client by address and fingerprint:
	// browsers behind one NAT that differ in TLS stack are apart.
	ComposeAddressFingerprint
)

// ParseCompose reads an --identity value.
func ParseCompose(s string) (Compose, bool) {
	switch s {
	case "address":
		return ComposeAddress, true
	case "fingerprint":
		return ComposeFingerprint, true
	case "address+fingerprint":
		return ComposeAddressFingerprint, true
	}
	return ComposeAddress, false
}

// String returns the --identity value of c.
func (c Compose) String() string {
	switch c {
	case ComposeFingerprint:
		return "fingerprint"
	case ComposeAddressFingerprint:
		return "address+fingerprint"
	}
	return "address"
}

// Fallback says why the client could not be read the configured way. The
// request is still decided, with the identity from the next rule down.
type Fallback uint8

// Fallbacks, each counted in flowlock_authz_identity_fallbacks_total.
const (
	FallbackNone              Fallback = iota
	FallbackBadIdentityHeader          // identity header present but empty, too long or not printable
	FallbackBadForwardedFor            // X-Forwarded-For missing, too short or malformed where it was expected: allowed unscored
	FallbackNoIdentity                 // no usable address anywhere: the request is allowed unscored
	// FallbackRequestTimeSkew is never a Client's: it counts a request
	// whose time from Envoy was too far off, so the local clock was used.
	FallbackRequestTimeSkew
	// FallbackNoIdentityHeader is never a Client's either: it counts a
	// request without --identity-header, scored by its address
	// (CauseNoIdentityHeader).
	FallbackNoIdentityHeader
	// FallbackNoClaim: --identity-jwt-claim is set and the request's
	// metadata_context carried no such verified claim (no token, or
	// ext_authz does not forward the jwt_authn namespace); it is scored by
	// the next rule down, usually the address.
	FallbackNoClaim
	// FallbackBadClaim: the claim is there but not a usable identity (not
	// a string or integer, empty, longer than 128 bytes, or not printable).
	FallbackBadClaim
	// FallbackNoFingerprint: --identity composes the fingerprint and the
	// request carried none that can be used; it is scored by address.
	FallbackNoFingerprint

	numFallbacks
)

// Fallbacks returns every fallback, FallbackNone first, so that metric
// label children can be resolved once at start-up.
func Fallbacks() []Fallback { return values(numFallbacks) }

// String returns the metric label value of f.
func (f Fallback) String() string {
	switch f {
	case FallbackBadIdentityHeader:
		return "bad_identity_header"
	case FallbackBadForwardedFor:
		return "bad_forwarded_for"
	case FallbackNoIdentity:
		return "no_identity"
	case FallbackRequestTimeSkew:
		return "request_time_skew"
	case FallbackNoIdentityHeader:
		return "no_identity_header"
	case FallbackNoClaim:
		return "no_jwt_claim"
	case FallbackBadClaim:
		return "bad_jwt_claim"
	case FallbackNoFingerprint:
		return "no_fingerprint"
	default:
		return "none"
	}
}

// Client is what ClientRules found: the identity to score and the client
// address that allow and deny lists apply to (invalid when unknown).
type Client struct {
	ID       identity.ID
	Addr     netip.Addr
	Fallback Fallback
	// Cause says, finer than Fallback, what the proxy sent that kept the
	// client from being read the configured way: the diagnosis that the
	// log and the dashboard give an operator (see diagnose.go). CauseNone
	// when nothing is wrong, or a valid identity header made it moot.
	Cause Cause
	// Fingerprint is the key of the client's TLS fingerprint
	// (identity.FingerprintKey), "" when none was configured or sent: the
	// evidence that --fingerprint-flag-after gathers, whatever the
	// identity is made of.
	Fingerprint string
}

// Resolve finds the client from the proxy's view of a request: the source
// address of the connection (invalid if unknown), the X-Forwarded-For value
// as the proxy passed it, and the identity header value ("" if absent). It
// does not allocate, whatever the size of the headers.
func (r *ClientRules) Resolve(source netip.Addr, xff, idHeader string) Client {
	return r.ResolveWith(source, xff, idHeader, "", "")
}

// ResolveWith is Resolve with the verified JWT claim from metadata_context
// ("" if absent; see claimFromMetadata) and the fingerprint header value
// ("" if absent). Rules in order: a valid claim, a valid identity header,
// then the address, composed with the fingerprint as Compose says. It
// allocates nothing once the fingerprint (when one is configured and sent) has been seen.
func (r *ClientRules) ResolveWith(source netip.Addr, xff, idHeader, claim, fingerprint string) Client {
	var c Client
	c.Addr, c.Cause = r.clientAddr(source, xff)
	if c.Cause != CauseNone {
		c.Fallback = FallbackBadForwardedFor
	}
	if r.FingerprintHeader != "" && fingerprint != "" {
		c.Fingerprint = identity.FingerprintKey(fingerprint)
	}
	if len(r.ClaimPath) > 0 {
		if claim != "" {
			if id, err := identity.FromName(claim); err == nil {
				c.ID, c.Cause = id, CauseNone
				return c
			}
		}
		// Say why, unless the address is already lost: that is worse.
		if c.Fallback == FallbackNone {
			c.Fallback, c.Cause = FallbackNoClaim, CauseNoClaim
			if claim != "" {
				c.Fallback, c.Cause = FallbackBadClaim, CauseBadClaim
			}
		}
	}
	if r.IdentityHeader != "" && idHeader != "" {
		if id, err := identity.FromName(idHeader); err == nil {
			c.ID, c.Cause = id, CauseNone
			return c
		}
		c.Fallback = FallbackBadIdentityHeader
	}
	if !c.Addr.IsValid() {
		if c.Fallback == FallbackNone {
			c.Fallback = FallbackNoIdentity
		}
		if c.Cause == CauseNone {
			c.Cause = CauseNoSource
		}
		return c
	}
	// Scored by address: say why when an identity header was configured,
	// for the case where no request ever carries it. A missing claim
	// (checked first) says more.
	switch {
	case r.IdentityHeader == "" || c.Cause == CauseNoClaim || c.Cause == CauseBadClaim:
	case idHeader == "":
		c.Cause = CauseNoIdentityHeader
	default:
		c.Cause = CauseBadIdentityHeader
	}
	switch {
	case r.Compose == ComposeAddress:
		c.ID = identity.FromAddr(c.Addr, r.IPv6Prefix)
	case c.Fingerprint == "":
		c.ID = identity.FromAddr(c.Addr, r.IPv6Prefix)
		if c.Fallback == FallbackNone {
			c.Fallback = FallbackNoFingerprint
		}
		if c.Cause == CauseNone {
			c.Cause = CauseNoFingerprint
		}
	case r.Compose == ComposeFingerprint:
		c.ID = identity.FromFingerprint(c.Fingerprint)
	default:
		c.ID = identity.Composed(c.Addr, r.IPv6Prefix, c.Fingerprint)
	}
	return c
}

// clientAddr applies the hop and trusted-proxy rules to find the client
// address. When X-Forwarded-For is configured but missing, too short or
// malformed, there is no client address: the source is then one of your
// own proxies, and scoring it would merge every client behind it into one
// identity (one timing record, one volume budget). A client cannot cause
// this on purpose: what it writes into the header stands left of what your
// proxies append, and is never reached. It is a configuration problem, and
// is counted as such.
//
// In particular a trusted proxy that sends no X-Forwarded-For at all does
// not make its own address the client (CauseNoForwardedFor): see
// docs/RATIONALE.md for the trade-off.
func (r *ClientRules) clientAddr(source netip.Addr, xff string) (netip.Addr, Cause) {
	source = source.Unmap()
	useXFF := r.XFFTrustedHops > 0 ||
		(len(r.TrustedProxies) > 0 && (!source.IsValid() || r.trusted(source)))
	if !useXFF {
		return source, CauseNone
	}
	if _, _, ok := lastEntry(xff); !ok {
		return netip.Addr{}, CauseNoForwardedFor
	}
	rest := xff
	// Skip the entries that trusted hops appended after the client's own.
	for range r.XFFTrustedHops {
		var ok bool
		if _, rest, ok = lastEntry(rest); !ok {
			return netip.Addr{}, CauseShortForwardedFor
		}
	}
	for skipped := false; ; skipped = true {
		entry, before, ok := lastEntry(rest)
		if !ok {
			if skipped {
				return netip.Addr{}, CauseAllTrusted
			}
			return netip.Addr{}, CauseShortForwardedFor
		}
		a, ok := parseForwarded(entry)
		if !ok {
			return netip.Addr{}, CauseBadForwardedFor
		}
		if !r.trusted(a) {
			return a, CauseNone
		}
		rest = before
	}
}

func (r *ClientRules) trusted(a netip.Addr) bool {
	for _, p := range r.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// lastEntry splits the rightmost comma-separated entry off an
// X-Forwarded-For value. ok is false when there is no entry left.
func lastEntry(xff string) (entry, rest string, ok bool) {
	xff = strings.TrimRight(xff, " \t,")
	if xff == "" {
		return "", "", false
	}
	i := strings.LastIndexByte(xff, ',')
	return strings.TrimSpace(xff[i+1:]), xff[:max(i, 0)], true
}

// parseForwarded reads one X-Forwarded-For entry: an address, optionally
// with a port ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseForwarded(s string) (netip.Addr, bool) {
	if len(s) > 64 { // longer than any address with a port: do not parse junk
		return netip.Addr{}, false
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}
