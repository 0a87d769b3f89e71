package identity

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"

	"github.com/flowlock/flowlock/internal/strmemo"
)

// A TLS fingerprint (JA4, or JA3 where only that exists) names a client's
// TLS stack, not a person: one browser build shares it with millions. Flow
// Lock never keeps the value itself, only FingerprintKey's hash of it, so
// the state, the shared keys in Redis, the dashboard and the logs hold a
// short fixed-size token whatever the proxy sent.
const (
	// FingerprintPrefix starts every fingerprint key.
	FingerprintPrefix = "fp:"
	// fingerprintHex is how many hex digits of SHA-256 a key keeps: 64
	// bits, ample to tell the few thousand TLS stacks in use apart.
	fingerprintHex = 16
	// fingerprintKeyLen is the length of a fingerprint key.
	fingerprintKeyLen = len(FingerprintPrefix) + fingerprintHex
	// maxFingerprintLen bounds the header value hashed: a JA4 is 36
	// bytes, a JA3 hash 32; anything much longer is not a fingerprint.
	maxFingerprintLen = 256
	// composedSep joins the address and the fingerprint of an
	// address+fingerprint identity in String and Parse.
	composedSep = "+"
)

// FingerprintKey returns the key of a fingerprint value as the proxy sent
// it: "fp:" and 16 hex digits of its SHA-256, or "" for an empty, overlong
// or unprintable value. The hash is unkeyed so that every replica and every
// restart derives the same key (timing shared through Redis is keyed by
// it); it hides the raw header, not which public browser build it was.
// A value seen before costs a lookup: neither a hash nor an allocation.
func FingerprintKey(v string) string {
	if v == "" || len(v) > maxFingerprintLen {
		return ""
	}
	for i := range len(v) {
		if c := v[i]; c < 0x21 || c > 0x7e {
			return ""
		}
	}
	return fingerprintKeys.Get(v, hashFingerprint)
}

// fingerprintKeys remembers the keys of the fingerprints seen. There are
// a few thousand TLS stacks in use, so nearly every Check repeats one; a
// client that invents fingerprints fills a shard, which then starts again
// empty, so the memo stays under keyMemoShards × keyMemoPerShard entries
// (about 2 MiB at the longest values).
var fingerprintKeys = strmemo.New(keyMemoShards, keyMemoPerShard)

const (
	keyMemoShards   = 16
	keyMemoPerShard = 512
)

// hashFingerprint is the key of a valid fingerprint value.
func hashFingerprint(v string) string {
	var in [maxFingerprintLen]byte // on the stack: []byte(v) would allocate
	sum := sha256.Sum256(in[:copy(in[:], v)])
	var buf [fingerprintKeyLen]byte
	out := append(buf[:0], FingerprintPrefix...)
	out = hex.AppendEncode(out, sum[:fingerprintHex/2])
	return string(out)
}

// IsFingerprintKey reports whether s has the form FingerprintKey returns.
func IsFingerprintKey(s string) bool {
	rest, ok := strings.CutPrefix(s, FingerprintPrefix)
	if !ok || len(rest) != fingerprintHex {
		return false
	}
	for i := range len(rest) {
		if c := rest[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// FromFingerprint returns the identity of a fingerprint key (--identity
// fingerprint): every client with that TLS stack is one client, whatever
// its address. It is a name identity whose name is the key; the zero ID
// for a key FingerprintKey did not make.
func FromFingerprint(key string) ID {
	if !IsFingerprintKey(key) {
		return ID{}
	}
	return ID{name: key}
}

// Composed returns the identity of one TLS stack at one address (--identity
// address+fingerprint): the address grouped like FromAddr, and the
// fingerprint key. Browsers behind one NAT address that differ in TLS stack
// are then different clients. An invalid address or key gives the address
// identity alone (or the zero ID).
//
// A composed identity reports its address through Addr, so the allow and
// deny lists apply to it, but not through IPv6Bits: regrouping by another
// --ipv6-prefix leaves it alone.
func Composed(a netip.Addr, ipv6Prefix int, key string) ID {
	id := FromAddr(a, ipv6Prefix)
	if id.IsZero() || !IsFingerprintKey(key) {
		return id
	}
	id.name = key
	return id
}

// Fingerprint returns the fingerprint key of a fingerprint or composed
// identity, or "".
func (id ID) Fingerprint() string {
	if IsFingerprintKey(id.name) {
		return id.name
	}
	return ""
}

// composed reports whether id has both an address and a name.
func (id ID) composed() bool { return id.name != "" && id.addr.IsValid() }

// parseComposed reads "ADDR+fp:HEX" or "PREFIX+fp:HEX" as String writes a
// composed identity.
func parseComposed(s string, ipv6Prefix int) (ID, bool) {
	i := strings.LastIndex(s, composedSep+FingerprintPrefix)
	if i <= 0 || !IsFingerprintKey(s[i+len(composedSep):]) {
		return ID{}, false
	}
	key, left := s[i+len(composedSep):], s[:i]
	if a, err := netip.ParseAddr(left); err == nil {
		return Composed(a, ipv6Prefix, key), true
	}
	if p, err := netip.ParsePrefix(left); err == nil && p.Addr().Is6() && !p.Addr().Is4In6() {
		return Composed(p.Addr(), p.Bits(), key), true
	}
	return ID{}, false
}
