package quarantine

import (
	"container/heap"
	"strings"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// Apply merges a quarantine decided by another replica into the list, as
// that replica's list holds it, and reports whether anything changed. The
// merge is the same on every replica, whatever order changes arrive in: the
// later end wins (with its since, reason, score and manual flag), the larger
// strike count wins, and the larger hit count wins. An entry already over
// at now adds only its strike history. The change is recorded as an event
// with Remote set, so that it is not shared back.
func (l *List) Apply(e Entry, now time.Time) bool {
	if e.ID.IsZero() {
		return false
	}
	t := now.UnixNano()
	until, since := e.Until.UnixNano(), e.Since.UnixNano()
	s := l.shardFor(e.ID)
	s.mu.Lock()
	r := s.m[e.ID]
	if r == nil {
		if until <= t {
			s.mu.Unlock()
			return false // over, and no history here to add it to
		}
		r = s.insertLocked(e.ID, t)
	}
	changed := false
	// Strikes: the other replica counted its admissions; keep as many
	// strike times here, so that this replica escalates alike.
	for len(r.strikeT) < min(e.Strikes, maxStrikes) {
		r.addStrike(min(since, t) - int64(len(r.strikeT)))
		changed = true
	}
	if r.strikes < e.Strikes {
		r.strikes = e.Strikes
		changed = true
	}
	if until > r.until && until > t {
		wasActive := r.until > t
		if !wasActive {
			s.endLocked(r, true)
		}
		r.since, r.until = since, min(until, addClamped(t, MaxBanTTL))
		r.reason = strings.Clone(e.Reason)
		r.score, r.manual = e.Score, e.Manual
		if wasActive {
			heap.Fix(&s.h, r.index)
		} else {
			s.startLocked(r)
		}
		changed = true
	}
	if r.until > t && e.Manual && until > t && until <= r.until && (!r.manual || r.reason != e.Reason) {
		// An operator's ban over a longer quarantine: the same end, but
		// manual, with the operator's reason, as a local Ban does.
		r.manual, r.reason = true, strings.Clone(e.Reason)
		changed = true
	}
	if r.until > t && e.Hits > r.hits.Load() {
		r.hits.Store(e.Hits)
	}
	if changed {
		kind := EventAdmitted
		if r.manual {
			kind = EventBanned
		}
		s.ev.addFrom(kind, r, t, true)
	}
	s.mu.Unlock()
	if changed {
		l.notify()
	}
	return changed
}

// Withdraw ends id's quarantine because another replica released it, like
// Release, and records the event with Remote set. It reports false if id
// was not quarantined here.
func (l *List) Withdraw(id identity.ID, now time.Time) bool {
	t := now.UnixNano()
	s := l.shardFor(id)
	s.mu.Lock()
	r := s.m[id]
	if r == nil || r.until <= t {
		s.mu.Unlock()
		return false
	}
	r.until = t
	s.endLocked(r, false)
	s.ev.addFrom(EventReleased, r, t, true)
	heap.Fix(&s.h, r.index)
	s.mu.Unlock()
	l.notify()
	return true
}
