package quarantine

import (
	"slices"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// Helpers only the tests use: the service lists the quarantine through
// SnapshotN, which is bounded.

// Snapshot returns the quarantines active at now, soonest release first
// (ties in identity.Compare order). It copies every active entry: for a
// listing that may be large, use SnapshotN.
func (l *List) Snapshot(now time.Time) []Entry {
	t := now.UnixNano()
	var out []Entry
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.RLock()
		for _, r := range s.m {
			if r.until > t {
				out = append(out, r.entry())
			}
		}
		s.mu.RUnlock()
	}
	slices.SortFunc(out, compareEntries)
	return out
}

// Options returns the effective options, with defaults filled in.
func (l *List) Options() Options { return l.opts }

// Hit is Check that counts the request in the quarantine's Hits (the
// returned Entry includes it), as Refuse does on the Check path: the tests'
// way to see the whole Entry after a refusal.
func (l *List) Hit(id identity.ID, now time.Time) (Entry, bool) {
	s := l.shardFor(id)
	t := now.UnixNano()
	s.mu.RLock()
	if r, ok := s.m[id]; ok && r.until > t {
		r.hits.Add(1)
		e := r.entry()
		s.mu.RUnlock()
		return e, true
	}
	s.mu.RUnlock()
	if w := l.wide.Load(); w != nil {
		return l.checkWide(w, id, t, true)
	}
	return Entry{}, false
}
