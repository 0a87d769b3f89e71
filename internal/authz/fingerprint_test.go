package authz

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/flowlock/flowlock/internal/identity"
)

const (
	chromeJA4  = "t13d1516h2_8daaf6152771_02713d6af862"
	firefoxJA4 = "t13d1715h2_5b57614c22b0_3d5424432f57"
)

// TestComposeIdentity: the three --identity settings, and what each does
// without a fingerprint.
func TestComposeIdentity(t *testing.T) {
	nat := netip.MustParseAddr("203.0.113.7")
	chrome, firefox := identity.FingerprintKey(chromeJA4), identity.FingerprintKey(firefoxJA4)
	for _, tc := range []struct {
		compose          Compose
		fp               string
		want             identity.ID
		fallback         Fallback
		separatesBrowser bool
	}{
		{ComposeAddress, chromeJA4, identity.FromAddr(nat, 64), FallbackNone, false},
		{ComposeAddressFingerprint, chromeJA4, identity.Composed(nat, 64, chrome), FallbackNone, true},
		{ComposeFingerprint, chromeJA4, identity.FromFingerprint(chrome), FallbackNone, true},
		{ComposeAddressFingerprint, "", identity.FromAddr(nat, 64), FallbackNoFingerprint, false},
		{ComposeFingerprint, "bad value", identity.FromAddr(nat, 64), FallbackNoFingerprint, false},
	} {
		r := ClientRules{FingerprintHeader: "x-ja4", Compose: tc.compose, IPv6Prefix: 64}
		c := r.ResolveWith(nat, "", "", "", tc.fp)
		if c.ID != tc.want || c.Fallback != tc.fallback || c.Addr != nat {
			t.Errorf("%v with %q: %+v, want %v fallback %v", tc.compose, tc.fp, c, tc.want, tc.fallback)
		}
		other := r.ResolveWith(nat, "", "", "", firefoxJA4)
		if (other.ID != c.ID) != tc.separatesBrowser && tc.fp == chromeJA4 {
			t.Errorf("%v: two browsers at one address apart = %v, want %v", tc.compose, other.ID != c.ID, tc.separatesBrowser)
		}
		if tc.fp == chromeJA4 && c.Fingerprint != chrome {
			t.Errorf("%v: Fingerprint = %q, want the key %q whatever the identity", tc.compose, c.Fingerprint, chrome)
		}
		if other.Fingerprint != firefox {
			t.Errorf("%v: Fingerprint = %q", tc.compose, other.Fingerprint)
		}
	}
	// Without --fingerprint-header the value is never read.
	plain := ClientRules{IPv6Prefix: 64}
	if c := plain.ResolveWith(nat, "", "", "", chromeJA4); c.Fingerprint != "" || c.ID != identity.FromAddr(nat, 64) {
		t.Errorf("no fingerprint header configured: %+v", c)
	}
	// A rotating bot keeps its identity under --identity fingerprint.
	r := ClientRules{FingerprintHeader: "x-ja4", Compose: ComposeFingerprint}
	a := r.ResolveWith(netip.MustParseAddr("198.51.100.1"), "", "", "", chromeJA4)
	b := r.ResolveWith(netip.MustParseAddr("192.0.2.200"), "", "", "", chromeJA4)
	if a.ID != b.ID {
		t.Error("--identity fingerprint: one TLS stack at two addresses is two clients")
	}
	if a.Addr == b.Addr {
		t.Error("the client address must stay the request's, for the lists")
	}
}

// TestReadInputFingerprint reads the configured header, and only it.
func TestReadInputFingerprint(t *testing.T) {
	rules := ClientRules{FingerprintHeader: "x-ja4"}
	var in Input
	readRules(request("203.0.113.7", map[string]string{"x-ja4": chromeJA4, "x-ja3": "abc"}), rules, &in)
	if in.Fingerprint != chromeJA4 {
		t.Errorf("Fingerprint = %q", in.Fingerprint)
	}
	in = Input{}
	readRules(request("203.0.113.7", map[string]string{"x-ja4": chromeJA4}), ClientRules{}, &in)
	if in.Fingerprint != "" {
		t.Errorf("read %q with no --fingerprint-header", in.Fingerprint)
	}
}

// TestForwardAuthFingerprint: a forward-auth proxy that sets the
// fingerprint header gets the same composition as the gRPC Check, and a
// configured claim is neither read nor counted missing there.
func TestForwardAuthFingerprint(t *testing.T) {
	rules := ClientRules{FingerprintHeader: "x-ja4", Compose: ComposeAddressFingerprint, IPv6Prefix: 64,
		ClaimNamespace: jwtNamespace, ClaimPath: []string{"payload", "sub"}}
	f := NewForwardAuth(ForwardAuthOptions{Rules: rules})
	r := httptest.NewRequest(http.MethodGet, "/check", nil)
	r.RemoteAddr = "203.0.113.7:4711"
	r.Header.Set("X-Ja4", chromeJA4)
	c, _ := f.client(r)
	if want := identity.Composed(netip.MustParseAddr("203.0.113.7"), 64, identity.FingerprintKey(chromeJA4)); c.ID != want || c.Fallback != FallbackNone {
		t.Errorf("client = %+v, want %v", c, want)
	}
}
