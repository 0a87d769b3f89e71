package quarantine

import (
	"fmt"
	"net/netip"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestLists(t *testing.T) {
	s := NewLists(
		prefixes("10.0.0.0/8", "2001:db8::/32", "::ffff:192.168.0.0/112", "100.64.1.1/32"),
		prefixes("203.0.113.7/32", "198.51.100.0/24", "2001:db8:bad::/48", "fe80::/10"),
	)
	tests := []struct {
		addr    string
		allowed bool
		denied  bool
	}{
		{"10.1.2.3", true, false},
		{"::ffff:10.1.2.3", true, false}, // v4-mapped matches v4
		{"11.0.0.1", false, false},
		{"100.64.1.1", true, false},
		{"100.64.1.2", false, false},
		{"192.168.44.5", true, false}, // from the mapped prefix
		{"::ffff:192.168.44.5", true, false},
		{"192.169.0.1", false, false},
		{"2001:db8::1", true, false},
		{"2001:db8:bad::1", true, true}, // in both: the caller decides
		{"2001:db9::1", false, false},
		{"203.0.113.7", false, true},
		{"::ffff:203.0.113.7", false, true},
		{"203.0.113.8", false, false},
		{"198.51.100.200", false, true},
		{"::ffff:198.51.100.200", false, true},
		{"fe80::1%eth0", false, true}, // zone ignored
		{"::1", false, false},
		{"0.0.0.0", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			a := netip.MustParseAddr(tc.addr)
			if got := s.Allowed(a); got != tc.allowed {
				t.Errorf("Allowed(%s) = %v, want %v", a, got, tc.allowed)
			}
			if got := s.Denied(a); got != tc.denied {
				t.Errorf("Denied(%s) = %v, want %v", a, got, tc.denied)
			}
		})
	}
	if s.Allowed(netip.Addr{}) || s.Denied(netip.Addr{}) {
		t.Error("the invalid address matched a list")
	}
}

func TestListsNormalize(t *testing.T) {
	s := NewLists(
		append(prefixes("10.1.2.3/8", "10.0.0.0/8", "::ffff:1.2.3.0/120"), netip.Prefix{}),
		nil,
	)
	if got, want := fmt.Sprint(s.Allow()), "[10.0.0.0/8 1.2.3.0/24]"; got != want {
		t.Errorf("Allow() = %s, want %s (masked, deduplicated, unmapped, invalid dropped)", got, want)
	}
	if got := s.Deny(); len(got) != 0 {
		t.Errorf("Deny() = %v, want empty", got)
	}
	// Allow returns a copy.
	a := s.Allow()
	a[0] = netip.MustParsePrefix("0.0.0.0/0")
	if s.Allowed(netip.MustParseAddr("8.8.8.8")) {
		t.Error("changing the slice from Allow changed the list")
	}
}

func TestListsNil(t *testing.T) {
	var s *Lists
	a := netip.MustParseAddr("10.0.0.1")
	if s.Allowed(a) || s.Denied(a) || s.Allow() != nil || s.Deny() != nil {
		t.Error("a nil *Lists matched something")
	}
	empty := NewLists(nil, nil)
	if empty.Allowed(a) || empty.Denied(a) {
		t.Error("empty lists matched something")
	}
}

func TestListsAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	s := NewLists(prefixes("10.0.0.0/8", "2001:db8::/32"), prefixes("203.0.113.0/24"))
	for _, a := range []netip.Addr{
		netip.MustParseAddr("10.9.9.9"),
		netip.MustParseAddr("::ffff:203.0.113.9"),
		netip.MustParseAddr("2001:db8::1"),
		netip.MustParseAddr("fe80::1%eth0"),
	} {
		if n := testing.AllocsPerRun(1000, func() { s.Allowed(a); s.Denied(a) }); n != 0 {
			t.Errorf("Allowed/Denied(%s) allocate %v times, want 0", a, n)
		}
	}
}

func TestAllowedPrefix(t *testing.T) {
	l := NewLists([]netip.Prefix{
		netip.MustParsePrefix("2001:db8:1:2::/96"),
		netip.MustParsePrefix("2001:db8:9::/48"),
		netip.MustParsePrefix("192.0.2.0/24"),
	}, nil)
	tests := []struct {
		prefix string
		want   bool
	}{
		{"2001:db8:1:2::/64", false},        // only a /96 of it is allowed
		{"2001:db8:1:2::9/128", true},       // inside the /96
		{"2001:db8:9:5::/64", true},         // inside the /48
		{"2001:db8:9::/48", true},           // exactly
		{"2001:db8::/32", false},            // wider than any allowed prefix
		{"192.0.2.7/32", true},              //
		{"198.51.100.7/32", false},          //
		{"::ffff:192.0.2.7/128", true},      // IPv4-mapped is IPv4
		{"2001:db8:1:2:ffff::9/128", false}, // outside the /96
	}
	for _, tc := range tests {
		if got := l.AllowedPrefix(netip.MustParsePrefix(tc.prefix)); got != tc.want {
			t.Errorf("AllowedPrefix(%s) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
	var none *Lists
	if none.AllowedPrefix(netip.MustParsePrefix("192.0.2.7/32")) || none.HasAllow() || NewLists(nil, nil).HasAllow() || !l.HasAllow() {
		t.Error("HasAllow or a nil Lists is wrong")
	}
}
