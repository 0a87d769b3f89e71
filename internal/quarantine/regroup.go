package quarantine

import (
	"container/heap"
	"slices"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// Regrouped says what Regroup changed, for one summary log line.
type Regrouped struct {
	// Prefix is the IPv6 grouping the List now follows (1–128).
	Prefix int
	// From lists the other IPv6 prefix lengths entries were found with,
	// ascending: the grouping they were written under.
	From []int
	// Coarsened counts entries from a longer prefix, now keyed by their
	// address masked to Prefix.
	Coarsened int
	// Merged counts the coarsened entries that fell into the same group as
	// another entry and were folded into it (included in Coarsened).
	Merged int
	// Ranges counts entries from a shorter prefix, which cannot be split:
	// they are kept as they are and still match every client inside them.
	Ranges int
}

// Changed reports whether Regroup found any entry under another grouping.
func (g Regrouped) Changed() bool { return g.Coarsened > 0 || g.Ranges > 0 }

// wideSet lists the prefix lengths, shorter than the grouping Regroup was
// given, of the IPv6 entries kept as ranges: the lengths Check also tries
// for an IPv6 client it has no entry of its own for. It is immutable; the
// List swaps it whole.
type wideSet struct {
	prefix int   // the grouping Regroup was given, 1–128
	bits   []int // distinct lengths below prefix, longest (most specific) first
}

// Regroup re-keys IPv6 entries written under another --ipv6-prefix to
// prefix (values outside 1–127 mean 128: one address per client), so a
// restored quarantine still matches the clients it was meant for. Call it
// after ReadState or LoadFile; the state file keeps each entry's own prefix
// length. IPv4 and name identities, and IPv6 entries already at prefix, are
// not touched.
//
// An entry from a longer prefix (a /64 when prefix is 56) is keyed by its
// address masked to prefix. Entries that land in the same group merge, by
// rules that never shorten a ban or soften escalation: the quarantine that
// ends latest wins (its since, reason, score and manual flag; on a tie a
// manual ban wins), Strikes is the largest of them, and the strike history
// is the longest one within StrikeWindow (on a tie, the one with the latest
// strike). Histories are not added up: the clients did not offend more
// often because the grouping changed.
//
// An entry from a shorter prefix (a /64 when prefix is 128) cannot be split
// into the groups it covers. It is kept as a range: Check, Extend and
// Release for an IPv6 client with no active entry of its own also look for
// such a range containing it, one map probe per distinct range length, and
// only while ranges exist (Sweep drops the lengths no entry uses any more),
// so a List without them pays one atomic load on a miss. Ranges are not
// re-created by later Bans: an entry Ban or Admit adds is matched exactly.
//
// Regroup records no events and keeps expirations pending for Sweep. It
// signals Changed when it re-keyed anything.
func (l *List) Regroup(prefix int, now time.Time) Regrouped {
	if prefix <= 0 || prefix > 128 {
		prefix = 128
	}
	t := now.UnixNano()
	g := Regrouped{Prefix: prefix}
	for i := range l.shards {
		l.shards[i].mu.Lock()
	}
	defer func() {
		for i := range l.shards {
			l.shards[i].mu.Unlock()
		}
	}()

	from := map[int]bool{}
	var widths []int
	for i := range l.shards {
		for id, r := range l.shards[i].m {
			bits, ok := id.IPv6Bits()
			if !ok || bits == prefix {
				continue
			}
			from[bits] = true
			switch {
			case bits > prefix:
				g.Coarsened++
			case r.until > t:
				g.Ranges++
				if !slices.Contains(widths, bits) {
					widths = append(widths, bits)
				}
			}
			// An ended entry from a shorter prefix only keeps strike
			// history that no client can reach any more (requests carry
			// the longer prefix); Sweep forgets it with its strikes.
		}
	}
	for b := range from {
		g.From = append(g.From, b)
	}
	slices.Sort(g.From)
	l.wide.Store(newWideSet(prefix, widths))
	if g.Coarsened == 0 {
		return g // nothing moves: no rebuild, no write
	}

	// Re-key and merge in identity order, so that the outcome (and which
	// entry MaxEntries evicts, should the shards' loads shift) does not
	// depend on map order.
	var all []*record
	pending := 0
	for i := range l.shards {
		s := &l.shards[i]
		pending += s.expired
		for _, r := range s.m {
			if r.state == stateActive && r.until <= t {
				pending++ // ran out, not yet counted by Sweep
			}
			all = append(all, r)
		}
	}
	slices.SortFunc(all, func(a, b *record) int { return identity.Compare(a.id, b.id) })
	merged := make(map[identity.ID]*record, len(all))
	var order []identity.ID
	for _, r := range all {
		key := r.id
		if bits, ok := key.IPv6Bits(); ok && bits > prefix {
			a, _ := key.Addr()
			key = identity.FromAddr(a, prefix)
		}
		r.pruneStrikes(t, l.opts.StrikeWindow)
		if m, ok := merged[key]; ok {
			m.merge(r) // keeps the later end whichever of the two came first
			g.Merged++
			continue
		}
		merged[key] = &record{
			id: key, since: r.since, until: r.until, strikes: r.strikes,
			strikeT: r.strikeT, reason: r.reason, score: r.score, manual: r.manual,
		}
		order = append(order, key)
	}

	fresh := make([]shard, len(l.shards))
	for i := range fresh {
		fresh[i].m = make(map[identity.ID]*record)
		fresh[i].limit = l.shards[i].limit
	}
	for _, key := range order {
		r := merged[key]
		if r.until <= t && len(r.strikeT) == 0 {
			continue // over, and nothing left to escalate
		}
		s := &fresh[l.shardIndex(key)]
		nr := s.insertLocked(key, t) // evicts at MaxEntries
		nr.since, nr.until, nr.strikes = r.since, r.until, r.strikes
		nr.strikeT, nr.reason, nr.score, nr.manual = r.strikeT, r.reason, r.score, r.manual
		if nr.until > t {
			s.startLocked(nr)
		} else {
			heap.Fix(&s.h, nr.index)
		}
	}
	for i := range l.shards {
		s, f := &l.shards[i], &fresh[i]
		s.m, s.h, s.active = f.m, f.h, f.active
		s.expired = 0
		s.evictedHistory += f.evictedHistory
		s.evictedActive += f.evictedActive
	}
	l.shards[0].expired = pending
	l.notify()
	return g
}

// newWideSet returns the set for the range lengths widths under prefix, or
// nil if there are none.
func newWideSet(prefix int, widths []int) *wideSet {
	if len(widths) == 0 {
		return nil
	}
	widths = slices.Clone(widths)
	slices.Sort(widths)
	slices.Reverse(widths)
	return &wideSet{prefix: prefix, bits: widths}
}

// merge folds src, an entry re-keyed into r's group, into r (see Regroup).
func (r *record) merge(src *record) {
	if src.until > r.until || (src.until == r.until && src.manual && !r.manual) {
		r.since, r.until, r.reason, r.score, r.manual = src.since, src.until, src.reason, src.score, src.manual
	}
	r.strikes = max(r.strikes, src.strikes)
	if len(src.strikeT) > len(r.strikeT) ||
		(len(src.strikeT) == len(r.strikeT) && len(src.strikeT) > 0 && src.strikeT[len(src.strikeT)-1] > r.strikeT[len(r.strikeT)-1]) {
		r.strikeT = src.strikeT
	}
}

// checkWide is lookup's second look, for an IPv6 client with no active
// entry of its own: the most specific active range entry containing it.
func (l *List) checkWide(w *wideSet, id identity.ID, t int64, hit bool) (Entry, bool) {
	bits, ok := id.IPv6Bits()
	if !ok {
		return Entry{}, false
	}
	a, _ := id.Addr()
	for _, b := range w.bits {
		if b >= bits {
			continue
		}
		key := identity.FromAddr(a, b)
		s := l.shardFor(key)
		s.mu.RLock()
		if r, ok := s.m[key]; ok && r.until > t {
			if hit {
				r.hits.Add(1)
			}
			e := r.entry()
			s.mu.RUnlock()
			return e, true
		}
		s.mu.RUnlock()
	}
	return Entry{}, false
}

// lockActive write-locks the shard of the quarantine Check reports for id
// at t and returns it with its record: id's own entry, or else the most
// specific range containing it. If id is not quarantined it returns nil,
// nil with nothing locked.
func (l *List) lockActive(id identity.ID, t int64) (*shard, *record) {
	s := l.shardFor(id)
	s.mu.Lock()
	if r := s.m[id]; r != nil && r.until > t {
		return s, r
	}
	s.mu.Unlock()
	w := l.wide.Load()
	if w == nil {
		return nil, nil
	}
	bits, ok := id.IPv6Bits()
	if !ok {
		return nil, nil
	}
	a, _ := id.Addr()
	for _, b := range w.bits {
		if b >= bits {
			continue
		}
		key := identity.FromAddr(a, b)
		s := l.shardFor(key)
		s.mu.Lock()
		if r := s.m[key]; r != nil && r.until > t {
			return s, r
		}
		s.mu.Unlock()
	}
	return nil, nil
}

// wideLengths collects, during Sweep, the range lengths still in use.
type wideLengths [2]uint64

// add notes r's length if it is a range under w.
func (u *wideLengths) add(w *wideSet, id identity.ID) {
	if bits, ok := id.IPv6Bits(); ok && bits < w.prefix {
		u[bits/64] |= 1 << (bits % 64)
	}
}

// shrink returns the set of w's lengths still in use: w itself if all are,
// nil if none is.
func (u *wideLengths) shrink(w *wideSet) *wideSet {
	var keep []int
	for _, b := range w.bits {
		if u[b/64]&(1<<(b%64)) != 0 {
			keep = append(keep, b)
		}
	}
	if len(keep) == len(w.bits) {
		return w
	}
	return newWideSet(w.prefix, keep)
}
