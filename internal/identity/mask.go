package identity

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync/atomic"
)

// A name identity is usually a credential (an API key) or a customer
// identifier (a JWT subject, an e-mail address). Flow Lock needs the value
// itself only to key its state; people need just enough to tell clients
// apart and to act on one. Masked gives them that: a keyed hash, so equal
// values mask equally and nobody can test guesses against a mask without
// the key, plus the last few characters of a long value, which is how
// customers and support already name keys ("the key ending 7b2e").
const (
	// MaskPrefix starts every masked name.
	MaskPrefix = "key:"
	// maskHashHex is how many hex digits of the keyed hash a mask shows:
	// 48 bits, so that two of a million identities share a mask with a
	// probability of about 2e-3.
	maskHashHex = 12
	// maskTail is how many trailing characters of a value a mask shows,
	// and maskTailMin the shortest value that shows them: a short value
	// would give itself away.
	maskTail    = 4
	maskTailMin = 16
)

// maskKey keys the hash of masked names. It is random per process until
// SetMaskKey derives a stable one, so that a mask never reveals a
// low-entropy value (an e-mail address) to a dictionary.
var maskKey atomic.Pointer[[sha256.Size]byte]

func init() {
	var k [sha256.Size]byte
	_, _ = rand.Read(k[:]) // crypto/rand.Read never fails (Go 1.24)
	maskKey.Store(&k)
}

// SetMaskKey derives the key of masked names from secret (main passes the
// admin token), so that masks stay the same across restarts and across
// replicas that share the secret. An empty secret keeps the random key.
// Call it at startup, before anything is masked.
func SetMaskKey(secret string) {
	if secret == "" {
		return
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte("flowlock identity mask v1"))
	var k [sha256.Size]byte
	copy(k[:], mac.Sum(nil))
	maskKey.Store(&k)
}

// Masked returns id as logs, and by default the dashboard and the admin
// API, show it: an address identity as String writes it, a name identity
// as "key:" and 12 hex digits of a keyed hash, followed for a value of at
// least 16 bytes by "…" and its last 4 characters when those are ASCII
// letters, digits, '-', '_' or '.': "key:3f9a1c0d7b2e…Xk2e". It allocates.
//
// A fingerprint or composed identity is shown as String writes it: its
// name is already a hash (FingerprintKey).
func (id ID) Masked() string {
	if id.name == "" || IsFingerprintKey(id.name) {
		return id.String()
	}
	mac := hmac.New(sha256.New, maskKey.Load()[:])
	mac.Write([]byte(id.name))
	var sum [sha256.Size]byte
	var buf [len(MaskPrefix) + maskHashHex + len("…") + maskTail]byte
	out := append(buf[:0], MaskPrefix...)
	out = hex.AppendEncode(out, mac.Sum(sum[:0])[:maskHashHex/2])
	if tail := id.name[max(len(id.name)-maskTail, 0):]; len(id.name) >= maskTailMin && plainTail(tail) {
		out = append(append(out, "…"...), tail...)
	}
	return string(out)
}

// plainTail reports whether s is made of ASCII letters, digits, '-', '_'
// and '.', which are safe to show anywhere.
func plainTail(s string) bool {
	for i := range len(s) {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// LogValue implements slog.LogValuer: an ID logs as Masked, so that
// slog.Any("identity", id) never writes a credential into a log.
func (id ID) LogValue() slog.Value { return slog.StringValue(id.Masked()) }

// IsMask reports whether s has the form of a Masked name: "key:", 12
// lowercase hex digits, and optionally "…" and 1-4 tail characters. A
// header value may have that form too; the admin API then needs "name:"
// before it to mean the value itself.
func IsMask(s string) bool {
	rest, ok := strings.CutPrefix(s, MaskPrefix)
	if !ok || len(rest) < maskHashHex {
		return false
	}
	for i := range maskHashHex {
		if c := rest[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	rest = rest[maskHashHex:]
	if rest == "" {
		return true
	}
	tail, ok := strings.CutPrefix(rest, "…")
	return ok && len(tail) >= 1 && len(tail) <= maskTail && plainTail(tail)
}
