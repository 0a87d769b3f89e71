package quarantine

import (
	"slices"
	"time"
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
