package authz

import (
	"net/netip"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	lb := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name     string
		rules    ClientRules
		source   string
		xff      string
		idHeader string
		want     string
		fallback Fallback
	}{
		{name: "source only by default", source: "203.0.113.7", xff: "198.51.100.1", want: "203.0.113.7"},
		{name: "ipv4-mapped source is ipv4", source: "::ffff:203.0.113.7", want: "203.0.113.7"},
		{name: "ipv6 source grouped by /64", rules: ClientRules{IPv6Prefix: 64}, source: "2001:db8:1:2::77", want: "2001:db8:1:2::/64"},
		{name: "no source, no xff rule: no identity", xff: "198.51.100.1", fallback: FallbackNoIdentity},

		// Envoy at the edge with use_remote_address appends the peer it saw.
		{name: "hops 0 ignores a spoofed xff", source: "203.0.113.7", xff: "1.2.3.4, 203.0.113.7", want: "203.0.113.7"},
		// One load balancer in front of Envoy (xff_num_trusted_hops: 1):
		// the LB appended the client, Envoy appended the LB.
		{name: "hops 1 takes second from right", rules: ClientRules{XFFTrustedHops: 1}, source: "10.0.0.5", xff: "1.2.3.4, 203.0.113.7, 10.0.0.5", want: "203.0.113.7"},
		{name: "hops 2 as in Istio numTrustedProxies 2", rules: ClientRules{XFFTrustedHops: 2}, source: "10.244.0.1", xff: "56.5.6.7, 72.9.5.6, 98.1.2.3,10.244.0.1", want: "72.9.5.6"},
		{name: "hops with too short xff: no identity, not the proxy", rules: ClientRules{XFFTrustedHops: 2}, source: "10.0.0.5", xff: "203.0.113.7", fallback: FallbackBadForwardedFor},
		{name: "hops with malformed entry: no identity", rules: ClientRules{XFFTrustedHops: 1}, source: "10.0.0.5", xff: "<script>, 10.0.0.5", fallback: FallbackBadForwardedFor},
		{name: "junk left of the client is never reached", rules: ClientRules{XFFTrustedHops: 1}, source: "10.0.0.5", xff: "<script>, 203.0.113.7, 10.0.0.5", want: "203.0.113.7"},
		{name: "hops with ports and brackets", rules: ClientRules{XFFTrustedHops: 1}, source: "10.0.0.5", xff: "[2001:db8::9]:4711, 10.0.0.5", want: "2001:db8::9"},
		{name: "hops without source (fixture with no source)", rules: ClientRules{XFFTrustedHops: 1}, xff: "172.17.0.1, 10.1.1.1", want: "172.17.0.1"},

		{name: "trusted source: rightmost untrusted entry", rules: ClientRules{TrustedProxies: lb}, source: "10.0.0.5", xff: "1.2.3.4, 203.0.113.7, 10.9.9.9, 10.0.0.5", want: "203.0.113.7"},
		{name: "untrusted source: xff ignored", rules: ClientRules{TrustedProxies: lb}, source: "198.51.100.9", xff: "1.2.3.4", want: "198.51.100.9"},
		{name: "trusted source, all entries trusted: no identity", rules: ClientRules{TrustedProxies: lb}, source: "10.0.0.5", xff: "10.0.0.9, 10.0.0.5", fallback: FallbackBadForwardedFor},
		{name: "trusted ipv6 proxy", rules: ClientRules{TrustedProxies: lb, IPv6Prefix: 64}, source: "fd00::1", xff: "2001:db8:5:6::1, fd00::1", want: "2001:db8:5:6::/64"},
		{name: "empty xff from trusted source: no identity", rules: ClientRules{TrustedProxies: lb}, source: "10.0.0.5", xff: " , ", fallback: FallbackBadForwardedFor},
		{name: "bad xff but a valid identity header", rules: ClientRules{XFFTrustedHops: 1, IdentityHeader: "x-api-key"}, source: "10.0.0.5", xff: "", idHeader: "key-7", want: "key-7", fallback: FallbackBadForwardedFor},
		{name: "hops then trusted skip", rules: ClientRules{XFFTrustedHops: 1, TrustedProxies: lb}, source: "10.0.0.5", xff: "203.0.113.7, 10.1.1.1, 10.0.0.5", want: "203.0.113.7"},

		{name: "identity header wins", rules: ClientRules{IdentityHeader: "x-api-key"}, source: "203.0.113.7", idHeader: "key-123", want: "key-123"},
		{name: "identity header ignored when not configured", source: "203.0.113.7", idHeader: "key-123", want: "203.0.113.7"},
		{name: "bad identity header falls back to address", rules: ClientRules{IdentityHeader: "x-api-key"}, source: "203.0.113.7", idHeader: "a\x01b", want: "203.0.113.7", fallback: FallbackBadIdentityHeader},
		{name: "huge identity header falls back", rules: ClientRules{IdentityHeader: "x-api-key"}, source: "203.0.113.7", idHeader: strings.Repeat("k", 10000), want: "203.0.113.7", fallback: FallbackBadIdentityHeader},
		{name: "identity header without any address", rules: ClientRules{IdentityHeader: "x-api-key"}, idHeader: "key-9", want: "key-9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var src netip.Addr
			if tc.source != "" {
				src = netip.MustParseAddr(tc.source)
			}
			got := tc.rules.Resolve(src, tc.xff, tc.idHeader)
			if got.ID.String() != tc.want || got.Fallback != tc.fallback {
				t.Errorf("Resolve(%q, %q, %q) = %q (fallback %v), want %q (fallback %v)",
					tc.source, tc.xff, tc.idHeader, got.ID.String(), got.Fallback, tc.want, tc.fallback)
			}
		})
	}
}

func TestResolveHugeHeaderDoesNotAllocate(t *testing.T) {
	r := ClientRules{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, IdentityHeader: "x-api-key"}
	xff := strings.Repeat("10.1.2.3, ", 20000) + "203.0.113.7, 10.0.0.5"
	src := netip.MustParseAddr("10.0.0.5")
	allocs := testing.AllocsPerRun(100, func() {
		if c := r.Resolve(src, xff, ""); !c.ID.IsZero() && c.Fallback != FallbackNone {
			t.Fatal("unexpected fallback")
		}
	})
	if allocs != 0 {
		t.Errorf("Resolve allocated %v times per call, want 0", allocs)
	}
}

func FuzzResolve(f *testing.F) {
	f.Add("203.0.113.7", "1.2.3.4, 10.0.0.1", "key", 1)
	f.Add("", "[::1]:80,,, ,", "", 3)
	f.Add("10.0.0.5", strings.Repeat(",", 100), "\xff", 0)
	lb := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	f.Fuzz(func(t *testing.T, source, xff, idh string, hops int) {
		src, _ := netip.ParseAddr(source)
		r := ClientRules{TrustedProxies: lb, XFFTrustedHops: hops & 7, IdentityHeader: "x-id", IPv6Prefix: 64}
		c := r.Resolve(src, xff, idh)
		if c.ID.IsZero() && c.Fallback == FallbackNone {
			t.Fatalf("zero ID without a fallback reason")
		}
		if !c.ID.IsZero() && c.Fallback == FallbackNoIdentity {
			t.Fatalf("identity %v with fallback no_identity", c.ID)
		}
		if c.Addr.IsValid() && c.Addr.Is4In6() {
			t.Fatalf("mapped address %v leaked out", c.Addr)
		}
	})
}

// TestResolveCause pins the diagnosis behind each fallback: what the log
// and the dashboard tell an operator to change.
func TestResolveCause(t *testing.T) {
	proxy := netip.MustParseAddr("127.0.0.1")
	trusted := ClientRules{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	hops := ClientRules{XFFTrustedHops: 2}
	keyed := ClientRules{IdentityHeader: "x-api-key"}
	for _, tc := range []struct {
		name     string
		rules    ClientRules
		source   netip.Addr
		xff, idh string
		want     Cause
		unscored bool
	}{
		{"fine", trusted, proxy, "203.0.113.7", "", CauseNone, false},
		{"trusted proxy, no header", trusted, proxy, "", "", CauseNoForwardedFor, true},
		{"trusted proxy, blank header", trusted, proxy, " , ", "", CauseNoForwardedFor, true},
		{"hops, no header", hops, proxy, "", "", CauseNoForwardedFor, true},
		{"hops larger than the header", hops, proxy, "203.0.113.7, 10.0.0.1", "", CauseShortForwardedFor, true},
		{"every entry trusted", trusted, proxy, "127.0.0.2, 127.0.0.3", "", CauseAllTrusted, true},
		{"malformed entry", trusted, proxy, "unknown", "", CauseBadForwardedFor, true},
		{"no source", ClientRules{}, netip.Addr{}, "", "", CauseNoSource, true},
		{"bad identity header", keyed, proxy, "", "\u200b", CauseBadIdentityHeader, false},
		{"no identity header", keyed, proxy, "", "", CauseNoIdentityHeader, false},
		{"identity header makes the address moot", ClientRules{TrustedProxies: trusted.TrustedProxies, IdentityHeader: "x-api-key"}, proxy, "", "key-1", CauseNone, false},
	} {
		c := tc.rules.Resolve(tc.source, tc.xff, tc.idh)
		if c.Cause != tc.want || tc.want.Unscored() != tc.unscored || c.ID.IsZero() != tc.unscored {
			t.Errorf("%s: cause %v (unscored %v, id %v), want %v (unscored %v)", tc.name, c.Cause, c.Cause.Unscored(), c.ID, tc.want, tc.unscored)
		}
		if problem, fix := tc.rules.Explain(c.Cause, tc.source); tc.want != CauseNone && (problem == "" || fix == "") {
			t.Errorf("%s: no explanation for %v", tc.name, c.Cause)
		}
	}
}
