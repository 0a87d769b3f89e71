// Package identity names the client that Flow Lock keeps timing state and
// quarantine entries for: an IP address (IPv6 grouped by prefix) or an opaque
// value from a trusted identity header such as an API key or JWT subject.
//
// An ID is a small comparable value, so it can key a Go map without turning
// an address into a string on the hot path (netip.Addr.String allocates).
package identity

import (
	"cmp"
	"errors"
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"

	"github.com/flowlock/flowlock/internal/untrusted"
)

// MaxNameLen is the longest identity-header value accepted as an identity.
// Longer values are refused by FromName: a header is attacker-controlled, and
// every tracked identity holds its name in memory.
const MaxNameLen = 128

// ID identifies one client. The zero ID means "no identity".
//
// Address identities compare equal when their (masked) addresses are equal;
// name identities when their names are equal. An address identity never
// equals a name identity, even if the name looks like an address.
type ID struct {
	addr netip.Addr // client address, IPv6 masked to bits; invalid for names
	bits uint8      // prefix length of a grouped IPv6 address; 0 when not grouped
	name string     // identity-header value; empty for address identities
}

// FromAddr returns the identity of a client address. IPv4-mapped IPv6
// addresses are treated as IPv4; other IPv6 addresses are grouped by their
// first ipv6Prefix bits (1–128; values out of range mean 128, no grouping),
// because one IPv6 subscriber usually owns a whole /64. A zone is dropped.
// An invalid address gives the zero ID.
func FromAddr(a netip.Addr, ipv6Prefix int) ID {
	if !a.IsValid() {
		return ID{}
	}
	a = a.Unmap().WithZone("")
	if a.Is4() {
		return ID{addr: a}
	}
	if ipv6Prefix <= 0 || ipv6Prefix >= 128 {
		return ID{addr: a}
	}
	p, err := a.Prefix(ipv6Prefix)
	if err != nil {
		return ID{addr: a}
	}
	return ID{addr: p.Addr(), bits: uint8(ipv6Prefix)}
}

// ErrBadName reports an identity-header value that cannot be an identity.
var ErrBadName = errors.New("identity name must be 1-128 bytes of UTF-8 whose characters all show: no control, invisible, blank-looking or bidirectional format characters")

// FromName returns the identity for an identity-header value. It refuses
// empty or over-long values, invalid UTF-8, control characters, format
// characters (zero-width, bidirectional) and blank-looking ones (see
// ValidName), so that a hostile header cannot grow state without bound,
// break log lines, or pass on the dashboard for another identity
// ("203.0.113.7" + U+200B). The returned ID shares memory with s; keep it
// with Clone.
func FromName(s string) (ID, error) {
	if !ValidName(s) {
		return ID{}, ErrBadName
	}
	return ID{name: s}, nil
}

// storedName is FromName as it was before format characters were refused:
// a state file written then may hold such a name in quarantine, and it
// must still restore (and be shown masked or made visible) rather than
// stop startup.
func storedName(s string) (ID, error) {
	if len(s) == 0 || len(s) > MaxNameLen || !untrusted.Printable(s) {
		return ID{}, ErrBadName
	}
	return ID{name: s}, nil
}

// ValidName reports whether s is acceptable to FromName: every character
// shows as itself (untrusted.AllVisible), which refuses what Plain refuses
// and also the characters that print blank without being format characters
// (no-break and wide spaces, line separators, U+3164 and the other Hangul
// fillers, the braille blank, the combining grapheme joiner), since
// "203.0.113.7" followed by any of them passes on screen for the address.
// The ASCII space stays allowed, as it always was: names in state files
// written before may hold one.
func ValidName(s string) bool {
	return len(s) > 0 && len(s) <= MaxNameLen && untrusted.AllVisible(s)
}

// IsZero reports whether id is the zero ID (no identity).
func (id ID) IsZero() bool { return !id.addr.IsValid() && id.name == "" }

// Addr returns the client address of an address or composed identity
// (masked for grouped IPv6) and true, or false for a name identity.
func (id ID) Addr() (netip.Addr, bool) { return id.addr, id.addr.IsValid() }

// IPv6Bits returns the prefix length an IPv6 address identity is grouped by
// (128 for a single address) and true; for IPv4 and name identities it
// returns 0 and false. A restored quarantine uses it to tell entries grouped
// under another --ipv6-prefix from the current grouping.
func (id ID) IPv6Bits() (int, bool) {
	if !id.addr.Is6() || id.composed() {
		return 0, false
	}
	if id.bits == 0 {
		return 128, true
	}
	return int(id.bits), true
}

// Name returns the identity-header value of a name identity, the
// fingerprint key of a fingerprint or composed identity, or "".
func (id ID) Name() string { return id.name }

// Clone returns an ID that does not share memory with the request it came
// from. Stores call it before keeping an ID as a map key.
func (id ID) Clone() ID {
	id.name = strings.Clone(id.name)
	return id
}

// Compare orders identities without allocating, for sorted listings: the
// zero ID first, then address identities (IPv4 before IPv6, by address, then
// by prefix length), then name identities by name. It returns -1, 0 or +1,
// and 0 exactly when a == b.
func Compare(a, b ID) int {
	if c := cmp.Compare(a.kind(), b.kind()); c != 0 {
		return c
	}
	if c := a.addr.Compare(b.addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.bits, b.bits); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}

// kind ranks the zero ID, address identities and name identities for
// Compare.
func (id ID) kind() int {
	switch {
	case id.name != "":
		return 2
	case id.addr.IsValid():
		return 1
	default:
		return 0
	}
}

// String formats id for people and for the admin API: "203.0.113.7",
// "2001:db8:1:2::/64" for a grouped IPv6 client, or the header value itself.
// It allocates; keep it off the hot path.
func (id ID) String() string {
	var buf [64]byte
	return string(id.appendString(buf[:0]))
}

// appendString appends String's text to b: the one place that text is
// made, without allocating beyond b.
func (id ID) appendString(b []byte) []byte {
	switch {
	case id.composed() && id.bits != 0:
		b = netip.PrefixFrom(id.addr, int(id.bits)).AppendTo(b)
		return append(append(b, composedSep...), id.name...)
	case id.composed():
		return append(append(id.addr.AppendTo(b), composedSep...), id.name...)
	case id.name != "":
		return append(b, id.name...)
	case !id.addr.IsValid():
		return b
	case id.bits != 0:
		return netip.PrefixFrom(id.addr, int(id.bits)).AppendTo(b)
	default:
		return id.addr.AppendTo(b)
	}
}

// Parse reads an identity as written by String, for the admin API. An IP
// address gives an address identity grouped by ipv6Prefix like FromAddr; an
// IPv6 prefix must be the group itself (its length equal to ipv6Prefix, or
// /128 for one address), since any other range matches no client: ranges
// belong in --deny. "ADDR+fp:HEX" gives the composed identity of
// --identity address+fingerprint. Any other valid name gives a name identity; prefix
// "name:" forces one, for header values that look like addresses.
func Parse(s string, ipv6Prefix int) (ID, error) {
	return parse(s, ipv6Prefix, true)
}

// parse is Parse; strict=false reads back what MarshalText wrote: it
// accepts any IPv6 prefix length as written, and names that were valid
// when they were stored (see storedName).
func parse(s string, ipv6Prefix int, strict bool) (ID, error) {
	fromName := FromName
	if !strict {
		fromName = storedName
	}
	if n, ok := strings.CutPrefix(s, "name:"); ok {
		id, err := fromName(n)
		if err != nil {
			return ID{}, fmt.Errorf("identity %q: %w", untrusted.Clip(s, 64), err)
		}
		return id, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return FromAddr(a, ipv6Prefix), nil
	}
	if id, ok := parseComposed(s, ipv6Prefix); ok {
		return id, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4() || p.Addr().Is4In6() {
			return ID{}, fmt.Errorf("identity %q: IPv4 prefixes are not identities (use --allow/--deny for ranges)", untrusted.Clip(s, 64))
		}
		if !strict {
			return FromAddr(p.Addr(), p.Bits()), nil
		}
		if p.Bits() == 128 {
			return FromAddr(p.Addr(), ipv6Prefix), nil
		}
		if p.Bits() != ipv6Prefix {
			return ID{}, fmt.Errorf("identity %q: IPv6 clients are grouped by /%d (--ipv6-prefix), so a /%d matches no client; give an address or its /%d, or use --deny for ranges",
				untrusted.Clip(s, 64), ipv6Prefix, p.Bits(), ipv6Prefix)
		}
		return FromAddr(p.Addr(), ipv6Prefix), nil
	}
	id, err := fromName(s)
	if err != nil {
		return ID{}, fmt.Errorf("identity %q: not an IP address, and %w", untrusted.Clip(s, 64), err)
	}
	return id, nil
}

// MarshalText implements encoding.TextMarshaler, so IDs appear as strings in
// JSON state files and API responses.
func (id ID) MarshalText() ([]byte, error) { return id.AppendText(nil) }

// AppendText implements encoding.TextAppender: MarshalText's bytes
// appended to b. It allocates nothing for an address identity when b has
// room (the fleet detector hashes every note's identity this way).
func (id ID) AppendText(b []byte) ([]byte, error) {
	if id.name != "" && !id.composed() && needsNamePrefix(id.name) {
		return append(append(b, "name:"...), id.name...), nil
	}
	return id.appendString(b), nil
}

// needsNamePrefix reports whether a name would read back as something else.
func needsNamePrefix(n string) bool {
	if strings.HasPrefix(n, "name:") {
		return true
	}
	if _, err := netip.ParseAddr(n); err == nil {
		return true
	}
	if _, ok := parseComposed(n, 128); ok {
		return true
	}
	_, err := netip.ParsePrefix(n)
	return err == nil
}

// UnmarshalText implements encoding.TextUnmarshaler. Grouped IPv6 identities
// keep the prefix length they were written with.
func (id *ID) UnmarshalText(b []byte) error {
	v, err := parse(string(b), 128, false)
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Hash returns id's hash under seed, for picking a shard. Every sharded
// table keys it with a random seed of its own (maphash.MakeSeed), so that
// clients cannot choose addresses or names that all land in one shard.
// Grouped IPv6 identities that differ only in prefix length hash alike,
// which is harmless. A composed identity hashes its fingerprint too, so
// that one address with many TLS stacks spreads over the shards. It does
// not allocate.
func (id ID) Hash(seed maphash.Seed) uint64 {
	if a, ok := id.Addr(); ok {
		b := a.As16()
		h := maphash.Bytes(seed, b[:])
		if id.name != "" {
			h ^= maphash.String(seed, id.name)
		}
		return h
	}
	return maphash.String(seed, id.Name())
}
