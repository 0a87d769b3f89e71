package quarantine

import (
	"net/netip"
	"slices"
)

// Lists holds the operator's allow and deny CIDR lists. An allowed address
// is never quarantined (it is still scored, so the dashboard shows it); a
// denied address is always refused. The two lists answer independently: an
// address in both is Allowed and Denied, and the caller's policy decides.
//
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) match IPv4 prefixes, and a
// mapped prefix such as ::ffff:10.0.0.0/104 is read as 10.0.0.0/8. Zones are
// ignored. A lookup costs one map probe per distinct prefix length in the
// list, so lists of thousands of prefixes stay cheap, and it never allocates.
//
// Lists is immutable after NewLists and safe for concurrent use. A nil
// *Lists allows and denies nothing.
type Lists struct {
	allow prefixSet
	deny  prefixSet
}

// NewLists returns the lists for the given prefixes. Prefixes are masked
// (10.1.2.3/8 means 10.0.0.0/8), duplicates are removed, and invalid
// (zero) prefixes are ignored.
func NewLists(allow, deny []netip.Prefix) *Lists {
	return &Lists{allow: newPrefixSet(allow), deny: newPrefixSet(deny)}
}

// Allowed reports whether a is on the allow list.
func (s *Lists) Allowed(a netip.Addr) bool {
	if s == nil {
		return false
	}
	return s.allow.contains(a)
}

// AllowedPrefix reports whether the allow list covers all of p: one of its
// prefixes, no longer than p, contains p. A ban on a group of addresses
// (an IPv6 /64) is pointless only then; a partly allowed group is still
// denied outside the allowed part.
func (s *Lists) AllowedPrefix(p netip.Prefix) bool {
	if s == nil {
		return false
	}
	p, ok := normalizePrefix(p)
	if !ok {
		return false
	}
	group := s.allow.v6
	if p.Addr().Is4() {
		group = s.allow.v4
	}
	for _, ls := range group {
		if ls.bits > p.Bits() {
			break // sorted shortest first
		}
		q, err := p.Addr().Prefix(ls.bits)
		if err != nil {
			continue
		}
		if _, ok := ls.m[q]; ok {
			return true
		}
	}
	return false
}

// HasAllow reports whether the allow list holds any prefix.
func (s *Lists) HasAllow() bool { return s != nil && len(s.allow.list) > 0 }

// Denied reports whether a is on the deny list.
func (s *Lists) Denied(a netip.Addr) bool {
	if s == nil {
		return false
	}
	return s.deny.contains(a)
}

// Allow returns a copy of the normalized allow list, for display.
func (s *Lists) Allow() []netip.Prefix {
	if s == nil {
		return nil
	}
	return slices.Clone(s.allow.list)
}

// Deny returns a copy of the normalized deny list, for display.
func (s *Lists) Deny() []netip.Prefix {
	if s == nil {
		return nil
	}
	return slices.Clone(s.deny.list)
}

// prefixSet matches addresses against prefixes grouped by length: for each
// length present, the address is masked to it and looked up in a map.
type prefixSet struct {
	list []netip.Prefix // normalized, deduplicated, in input order
	v4   []lengthSet
	v6   []lengthSet
}

// lengthSet holds the masked prefixes of one length.
type lengthSet struct {
	bits int
	m    map[netip.Prefix]struct{}
}

func newPrefixSet(in []netip.Prefix) prefixSet {
	var ps prefixSet
	seen := make(map[netip.Prefix]struct{}, len(in))
	for _, p := range in {
		p, ok := normalizePrefix(p)
		if !ok {
			continue
		}
		if _, dup := seen[p]; dup {
			continue
		}
		seen[p] = struct{}{}
		ps.list = append(ps.list, p)
		group := &ps.v6
		if p.Addr().Is4() {
			group = &ps.v4
		}
		i := slices.IndexFunc(*group, func(ls lengthSet) bool { return ls.bits == p.Bits() })
		if i < 0 {
			*group = append(*group, lengthSet{bits: p.Bits(), m: make(map[netip.Prefix]struct{})})
			i = len(*group) - 1
		}
		(*group)[i].m[p] = struct{}{}
	}
	// Shorter prefixes first: broad ranges usually cover most hits.
	for _, g := range [][]lengthSet{ps.v4, ps.v6} {
		slices.SortFunc(g, func(a, b lengthSet) int { return a.bits - b.bits })
	}
	return ps
}

// normalizePrefix masks p, drops a zone, and rewrites an IPv4-mapped IPv6
// prefix of at least 96 bits as the IPv4 prefix it covers.
func normalizePrefix(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	a, bits := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p, true
}

func (ps *prefixSet) contains(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	a = a.Unmap().WithZone("")
	group := ps.v6
	if a.Is4() {
		group = ps.v4
	}
	for _, ls := range group {
		p, err := a.Prefix(ls.bits)
		if err != nil {
			continue
		}
		if _, ok := ls.m[p]; ok {
			return true
		}
	}
	return false
}
