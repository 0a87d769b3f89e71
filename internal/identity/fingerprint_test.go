package identity

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"
	"testing"
	"unsafe"
)

const ja4 = "t13d1516h2_8daaf6152771_02713d6af862"

func TestFingerprintKey(t *testing.T) {
	k := FingerprintKey(ja4)
	if !IsFingerprintKey(k) || len(k) != fingerprintKeyLen || strings.Contains(k, "8daaf") {
		t.Fatalf("FingerprintKey(%q) = %q", ja4, k)
	}
	if FingerprintKey(ja4) != k {
		t.Error("the key is not stable")
	}
	if FingerprintKey(ja4+"x") == k {
		t.Error("two fingerprints share a key")
	}
	for _, bad := range []string{"", "has space", "tab\t", strings.Repeat("a", maxFingerprintLen+1), "é"} {
		if got := FingerprintKey(bad); got != "" {
			t.Errorf("FingerprintKey(%q) = %q, want \"\"", bad, got)
		}
	}
}

func TestComposedIdentity(t *testing.T) {
	key := FingerprintKey(ja4)
	a := netip.MustParseAddr("203.0.113.7")
	id := Composed(a, 64, key)
	if got, ok := id.Addr(); !ok || got != a {
		t.Errorf("Addr = %v, %v", got, ok)
	}
	if id.Fingerprint() != key || id.Name() != key {
		t.Errorf("Fingerprint = %q", id.Fingerprint())
	}
	if id == FromAddr(a, 64) || id == FromFingerprint(key) {
		t.Error("a composed identity equals its address or its fingerprint alone")
	}
	if other := Composed(a, 64, FingerprintKey("t13d1517h2_aaaaaaaaaaaa_bbbbbbbbbbbb")); other == id {
		t.Error("two TLS stacks at one address are one identity")
	}
	if want := "203.0.113.7+" + key; id.String() != want || id.Masked() != want {
		t.Errorf("String = %q, Masked = %q, want %q", id.String(), id.Masked(), want)
	}

	v6 := Composed(netip.MustParseAddr("2001:db8:1:2::7"), 64, key)
	if want := "2001:db8:1:2::/64+" + key; v6.String() != want {
		t.Errorf("IPv6 String = %q, want %q", v6.String(), want)
	}
	if _, ok := v6.IPv6Bits(); ok {
		t.Error("a composed identity reports IPv6Bits: regrouping would turn it into a plain address")
	}

	for _, c := range []ID{id, v6, FromFingerprint(key)} {
		b, err := c.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back ID
		if err := back.UnmarshalText(b); err != nil || back != c {
			t.Errorf("round trip of %q: %v, %v", b, back, err)
		}
		if p, err := Parse(string(b), 64); err != nil || p != c {
			t.Errorf("Parse(%q) = %v, %v", b, p, err)
		}
	}
	// A header value that looks composed stays a name when written back.
	n, _ := FromName("203.0.113.7+" + key)
	if b, _ := n.MarshalText(); !strings.HasPrefix(string(b), "name:") {
		t.Errorf("a name that reads as a composed identity is written %q", b)
	}
	if FromAddr(a, 64).String() != "203.0.113.7" {
		t.Error("plain address identities changed form (Redis keys and state files depend on it)")
	}
	seed := maphash.MakeSeed()
	if id.Hash(seed) == FromAddr(a, 64).Hash(seed) {
		t.Error("a composed identity hashes like its address: one address with many TLS stacks would fill one shard")
	}
}

// TestFingerprintKeyMemo: a known fingerprint costs no allocation; a
// value read from a buffer that is then overwritten keeps its own key;
// a client inventing fingerprints cannot grow the memo past its bound,
// and keys stay right after a shard starts again.
func TestFingerprintKeyMemo(t *testing.T) {
	want := hashFingerprint(ja4)
	if got := FingerprintKey(ja4); got != want {
		t.Fatalf("key %q, want %q", got, want)
	}
	buf := []byte(ja4)
	v := unsafe.String(&buf[0], len(buf)) // as the lean decoder hands it over
	if got := FingerprintKey(v); got != want {
		t.Fatalf("key from a buffer %q, want %q", got, want)
	}
	copy(buf, "t13d0000h2_000000000000_000000000000")
	if got := FingerprintKey(ja4); got != want {
		t.Fatalf("after the buffer was reused: key %q, want %q", got, want)
	}
	if n := testing.AllocsPerRun(1000, func() { FingerprintKey(ja4) }); n != 0 {
		t.Errorf("a known fingerprint allocated %v times, want 0", n)
	}
	for i := range 100_000 {
		v := fmt.Sprintf("t13d1517h2_%012x_bbbbbbbbbbbb", i)
		if i%9973 == 0 && FingerprintKey(v) != hashFingerprint(v) {
			t.Fatalf("key of %q is wrong", v)
		}
		FingerprintKey(v)
	}
	if n := fingerprintKeys.Len(); n > keyMemoShards*keyMemoPerShard {
		t.Errorf("memo holds %d keys, bound %d", n, keyMemoShards*keyMemoPerShard)
	}
}
