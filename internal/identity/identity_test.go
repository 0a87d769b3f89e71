package identity

import (
	"cmp"
	"hash/maphash"
	"net/netip"
	"strings"
	"testing"
)

func TestFromAddr(t *testing.T) {
	tests := []struct {
		name   string
		addr   string
		prefix int
		want   string
	}{
		{"ipv4", "203.0.113.7", 64, "203.0.113.7"},
		{"ipv4-mapped ipv6 is ipv4", "::ffff:203.0.113.7", 64, "203.0.113.7"},
		{"ipv6 grouped by /64", "2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"},
		{"ipv6 grouped by /56", "2001:db8:1:2ff:aaaa::1", 56, "2001:db8:1:200::/56"},
		{"ipv6 prefix 128 is exact", "2001:db8::1", 128, "2001:db8::1"},
		{"zone dropped", "fe80::1%eth0", 128, "fe80::1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := FromAddr(netip.MustParseAddr(tc.addr), tc.prefix)
			if got.String() != tc.want {
				t.Errorf("FromAddr(%s, %d) = %q, want %q", tc.addr, tc.prefix, got, tc.want)
			}
		})
	}
	a := FromAddr(netip.MustParseAddr("2001:db8:1:2::1"), 64)
	b := FromAddr(netip.MustParseAddr("2001:db8:1:2::ffff"), 64)
	if a != b {
		t.Errorf("two addresses in one /64 gave different IDs: %v != %v", a, b)
	}
	if !FromAddr(netip.Addr{}, 64).IsZero() {
		t.Error("invalid address did not give the zero ID")
	}
}

func TestIPv6Bits(t *testing.T) {
	name, _ := FromName("api-key-123")
	tests := []struct {
		name   string
		id     ID
		want   int
		wantOK bool
	}{
		{"ipv6 /64", FromAddr(netip.MustParseAddr("2001:db8:1:2::9"), 64), 64, true},
		{"ipv6 /56", FromAddr(netip.MustParseAddr("2001:db8:1:2::9"), 56), 56, true},
		{"ipv6 single address", FromAddr(netip.MustParseAddr("2001:db8::1"), 128), 128, true},
		{"ipv4", FromAddr(netip.MustParseAddr("203.0.113.7"), 64), 0, false},
		{"ipv4-mapped", FromAddr(netip.MustParseAddr("::ffff:203.0.113.7"), 64), 0, false},
		{"name", name, 0, false},
		{"zero", ID{}, 0, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := tc.id.IPv6Bits(); got != tc.want || ok != tc.wantOK {
				t.Errorf("IPv6Bits(%v) = %d, %v; want %d, %v", tc.id, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestFromName(t *testing.T) {
	good := []string{"api-key-123", "user@example.com", "<img src=x onerror=alert(1)>", "ключ"}
	for _, s := range good {
		if _, err := FromName(s); err != nil {
			t.Errorf("FromName(%q) = %v, want ok", s, err)
		}
	}
	bad := []string{"", strings.Repeat("a", MaxNameLen+1), "a\nb", "a\x00", "\xff\xfe", "tab\there"}
	for _, s := range bad {
		if _, err := FromName(s); err == nil {
			t.Errorf("FromName(%q) = ok, want error", s)
		}
	}
	n, _ := FromName("10.0.0.1")
	a := FromAddr(netip.MustParseAddr("10.0.0.1"), 64)
	if n == a {
		t.Error("a name that looks like an address equals the address identity")
	}
}

func TestParseRoundTrip(t *testing.T) {
	ids := []ID{
		FromAddr(netip.MustParseAddr("203.0.113.7"), 64),
		FromAddr(netip.MustParseAddr("2001:db8:1:2::9"), 64),
		FromAddr(netip.MustParseAddr("2001:db8::9"), 128),
	}
	for _, s := range []string{"api-key", "10.0.0.1", "name:odd", "2001:db8::/64"} {
		id, err := FromName(s)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	for _, id := range ids {
		b, err := id.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var got ID
		if err := got.UnmarshalText(b); err != nil {
			t.Fatalf("UnmarshalText(%q): %v", b, err)
		}
		if got != id {
			t.Errorf("round trip of %q gave %#v, want %#v", b, got, id)
		}
	}
}

func TestParseIPv6Prefixes(t *testing.T) {
	tests := []struct{ in, want string }{
		{"2001:db8:1:2::77", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::/64", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::5/128", "2001:db8:1:2::/64"},
		{"2001:db8:1::/48", ""}, // matches no client when grouping by /64
		{"2001:db8:1:2:3::/80", ""},
	}
	for _, tc := range tests {
		id, err := Parse(tc.in, 64)
		if tc.want == "" {
			if err == nil || !strings.Contains(err.Error(), "--ipv6-prefix") {
				t.Errorf("Parse(%q) = %v, %v; want an error naming --ipv6-prefix", tc.in, id, err)
			}
			continue
		}
		if err != nil || id.String() != tc.want {
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, id, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{"", "10.0.0.0/8", "bad\nvalue", "name:"} {
		if _, err := Parse(s, 64); err == nil {
			t.Errorf("Parse(%q) = ok, want error", s)
		}
	}
	long := strings.Repeat("x", 5000)
	_, err := Parse(long, 64)
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("Parse(5000 bytes) error = %v; want a short error", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"203.0.113.7", "2001:db8::1", "2001:db8::/64", "name:x", "key", "::ffff:1.2.3.4"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := Parse(s, 64)
		if err != nil {
			return
		}
		if id.IsZero() {
			t.Fatalf("Parse(%q) gave the zero ID without error", s)
		}
		b, _ := id.MarshalText()
		var back ID
		if err := back.UnmarshalText(b); err != nil || back != id {
			t.Fatalf("Parse(%q) = %#v did not round-trip through %q: %#v %v", s, id, b, back, err)
		}
	})
}

func TestCompare(t *testing.T) {
	addr := func(s string, prefix int) ID { return FromAddr(netip.MustParseAddr(s), prefix) }
	name := func(s string) ID {
		id, err := FromName(s)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	// In the order Compare gives.
	ordered := []ID{
		{},
		addr("9.255.255.255", 64),
		addr("10.0.0.9", 64),
		addr("10.0.0.10", 64), // numeric, not textual, order
		addr("2001:db8::", 48),
		addr("2001:db8::", 64), // same masked address, longer prefix
		addr("2001:db8::1", 128),
		addr("2001:db8:0:1::", 64),
		name("10.0.0.1"), // a name that looks like an address is still a name
		name("alice"),
		name("bob"),
	}
	for i, a := range ordered {
		for j, b := range ordered {
			if got, want := Compare(a, b), cmp.Compare(i, j); got != want {
				t.Errorf("Compare(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
	if c := Compare(addr("2001:db8:1:2::1", 64), addr("2001:db8:1:2::ffff", 64)); c != 0 {
		t.Errorf("two addresses of one /64 compare %d, want 0", c)
	}
	a, b := addr("2001:db8::1", 128), name("zed")
	if n := testing.AllocsPerRun(100, func() { Compare(a, b); Compare(b, a); Compare(a, a) }); n != 0 {
		t.Errorf("Compare allocates %v times, want 0", n)
	}
}

// TestHash: equal identities hash alike under one seed, the seed changes
// the hash (so clients cannot aim at a shard), and hashing does not
// allocate.
func TestHash(t *testing.T) {
	s1, s2 := maphash.MakeSeed(), maphash.MakeSeed()
	a := FromAddr(netip.MustParseAddr("203.0.113.7"), 64)
	b := FromAddr(netip.MustParseAddr("203.0.113.7"), 64)
	n, _ := FromName("key-1")
	if a.Hash(s1) != b.Hash(s1) {
		t.Error("equal identities hash differently")
	}
	if a.Hash(s1) == a.Hash(s2) && n.Hash(s1) == n.Hash(s2) {
		t.Error("the seed does not change the hash")
	}
	if got := testing.AllocsPerRun(100, func() { _ = a.Hash(s1) + n.Hash(s1) }); got != 0 {
		t.Errorf("Hash allocates %v times", got)
	}
}

func TestFromNameRefusesFormatCharacters(t *testing.T) {
	for _, s := range []string{"203.0.113.7\u200b", "abc\u202etxt.exe", "\ufeffkey", "a\u2066b\u2069", "zw\u200djoin"} {
		if _, err := FromName(s); err == nil {
			t.Errorf("FromName(%q) = ok, want error", s)
		}
	}
}

// TestFromNameRefusesBlankLookingCharacters lists characters that are not
// format characters (Plain lets them through) but print as nothing or as a
// space, so that a name holding one passes on screen for another.
func TestFromNameRefusesBlankLookingCharacters(t *testing.T) {
	for _, s := range []string{
		"203.0.113.7\u3164", // Hangul filler
		"203.0.113.7\u2800", // braille blank
		"203.0.113.7\u00a0", // no-break space
		"203.0.113.7\u2028", // line separator
		"\u115f203.0.113.7", // Hangul choseong filler
		"203.0.113\u034f.7", // combining grapheme joiner
		"203.0.113.7\u3000", // ideographic space
		"203.0.113.7\u2029", // paragraph separator
		"203.0.113.7\u1160", // Hangul jungseong filler
		"203.0.113.7\uffa0", // halfwidth Hangul filler
		"203.0.113.7\u2003", // em space
		"203.0.113.7\u205f", // medium mathematical space
		"203.0.113.7\u1680", // ogham space mark
	} {
		if _, err := FromName(s); err == nil {
			t.Errorf("FromName(%q) = ok, want error", s)
		}
	}
	// The ASCII space was always allowed, and names with one may be in
	// state files; graphic text of any script stays allowed.
	for _, s := range []string{"key with spaces", "ключ", "鍵-키", "😀"} {
		if _, err := FromName(s); err != nil {
			t.Errorf("FromName(%q) = %v, want ok", s, err)
		}
	}
}

func TestMasked(t *testing.T) {
	name := func(s string) ID {
		id, err := FromName(s)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	long := name("sk_live_4eC39HqLyjWDarjtT1zdp7dc")
	short := name("alice")
	odd := name("ключ-ключ-ключ-ключ")
	addr := FromAddr(netip.MustParseAddr("203.0.113.7"), 64)

	if got := addr.Masked(); got != "203.0.113.7" {
		t.Errorf("address Masked = %q, want it as it is", got)
	}
	for _, id := range []ID{long, short, odd} {
		m := id.Masked()
		if strings.Contains(m, id.Name()[:min(len(id.Name()), 8)]) || !IsMask(m) {
			t.Errorf("Masked(%q) = %q: shows the value or is not a mask", id.Name(), m)
		}
		if m != id.Masked() {
			t.Errorf("Masked(%q) is not stable", id.Name())
		}
	}
	if m := long.Masked(); !strings.HasSuffix(m, "…p7dc") {
		t.Errorf("Masked of a long key = %q, want its last 4 characters", m)
	}
	if m := short.Masked(); strings.Contains(m, "…") {
		t.Errorf("Masked of a short value = %q, want no tail", m)
	}
	if long.Masked() == name("sk_live_4eC39HqLyjWDarjtT1zdp7dd").Masked() {
		t.Error("two values mask alike")
	}

	before := long.Masked()
	SetMaskKey("an admin token of some length")
	after := long.Masked()
	SetMaskKey("an admin token of some length")
	if after == before || long.Masked() != after {
		t.Errorf("SetMaskKey: masks %q, %q, %q; want a new key, then the same mask for the same secret", before, after, long.Masked())
	}

	for s, want := range map[string]bool{
		"key:0123456789ab":         true,
		"key:0123456789ab…p7dc":    true,
		"key:0123456789AB":         false,
		"key:0123456789a":          false,
		"key:0123456789ab…":        false,
		"key:0123456789ab…toolong": false,
		"203.0.113.7":              false,
	} {
		if got := IsMask(s); got != want {
			t.Errorf("IsMask(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestStoredNamesWithFormatCharactersRestore(t *testing.T) {
	// Accepted before format characters were refused, so a state file may
	// hold it; reading it back must not stop startup.
	old := "203.0.113.7\u200b"
	var id ID
	if err := id.UnmarshalText([]byte(old)); err != nil || id.Name() != old {
		t.Fatalf("UnmarshalText(%q) = %#v, %v; want the stored name", old, id, err)
	}
	if _, err := Parse(old, 64); err == nil {
		t.Errorf("Parse(%q) = ok; the admin API must refuse it", old)
	}
	if err := id.UnmarshalText([]byte("a\nb")); err == nil {
		t.Error("UnmarshalText accepted a control character")
	}
}

// TestAppendTextIsMarshalText: AppendText appends exactly MarshalText's
// bytes (the fleet detector's key is their hash, so every replica must
// make the same), and allocates nothing for an address identity.
func TestAppendTextIsMarshalText(t *testing.T) {
	named := func(s string) ID {
		id, err := FromName(s)
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	fp := FingerprintKey("t13d1516h2_8daaf6152771_02713d6af862")
	ids := []ID{
		{}, FromAddr(netip.MustParseAddr("203.0.113.7"), 64), FromAddr(netip.MustParseAddr("2001:db8::1"), 64),
		FromAddr(netip.MustParseAddr("2001:db8::1"), 128), named("user-42"), named("203.0.113.9"), named("name:x"),
		Composed(netip.MustParseAddr("203.0.113.7"), 64, fp), Composed(netip.MustParseAddr("2001:db8::1"), 48, fp),
	}
	for _, id := range ids {
		want, err := id.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		got, err := id.AppendText([]byte("prefix "))
		if err != nil || string(got) != "prefix "+string(want) {
			t.Errorf("%v: AppendText %q, MarshalText %q", id, got, want)
		}
	}
	id := ids[1]
	var buf [64]byte
	if n := testing.AllocsPerRun(100, func() { _, _ = id.AppendText(buf[:0]) }); n != 0 {
		t.Errorf("AppendText of an address allocates %v times", n)
	}
}
