// Package fingerprint gathers evidence against TLS fingerprints: when
// several distinct identities carrying one fingerprint have been
// quarantined within a window, the fingerprint is flagged, and the policy
// confirms new identities carrying it faster. A flag is a prior, never a
// verdict: one browser build's fingerprint is shared by millions of people,
// so a flag alone quarantines nobody, and a fingerprint also carried by
// many calm identities is never flagged at all (docs/RATIONALE.md).
//
// Fingerprints are kept as the keys identity.FingerprintKey makes (a hash),
// never as sent. Memory is bounded by Options.MaxFingerprints.
package fingerprint

import (
	"cmp"
	"hash/maphash"
	"slices"
	"sync"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// Defaults for the zero Options.
const (
	DefaultWindow          = time.Hour
	DefaultCalmLimit       = 20
	DefaultMaxFingerprints = 10_000
	// evictSample is how many entries a full table looks at to find one
	// to evict.
	evictSample = 8
)

// Options configure Evidence.
type Options struct {
	// FlagAfter is how many distinct identities carrying a fingerprint
	// must have been quarantined within Window to flag it. 0 (or less)
	// turns the evidence off: New returns nil, whose methods do nothing.
	FlagAfter int
	// Window is how recent those quarantines must be; 0 means
	// DefaultWindow (1 hour).
	Window time.Duration
	// CalmLimit is how many distinct identities seen calm within the last
	// four Windows may carry a fingerprint before it cannot be flagged;
	// 0 means DefaultCalmLimit (20).
	CalmLimit int
	// MaxFingerprints caps the fingerprints tracked; 0 means
	// DefaultMaxFingerprints (10,000). Each holds up to FlagAfter
	// quarantines (16 bytes each) and CalmLimit calm identities (16 bytes
	// each): at the limits (50, 200) about 4 KB, 40 MB for 10,000. At the
	// cap a new fingerprint evicts the idlest of a few sampled unflagged
	// ones; if all of those are flagged it is not tracked.
	MaxFingerprints int
}

// Evidence is the per-fingerprint record. It is safe for concurrent use.
// It is touched only when a quarantine is admitted, when an identity is
// found calm (every calmEvery requests past calmAfter), and when a verdict
// over the threshold is not yet confirmed: not on every Check.
type Evidence struct {
	opts Options
	seed maphash.Seed

	mu sync.Mutex // guards the following fields
	m  map[string]*entry
}

// entry is what is known of one fingerprint.
type entry struct {
	quarantined []stamp // distinct identities quarantined, oldest first, at most FlagAfter
	calm        []stamp // distinct calm identities, when last seen calm, at most CalmLimit
	last        int64   // when the entry was last touched, Unix ns
	since       int64   // when it was last flagged, Unix ns; 0 never
}

type stamp struct {
	id uint64 // identity hash
	at int64  // Unix ns
}

// New returns the evidence o describes, or nil when o.FlagAfter is 0.
func New(o Options) *Evidence {
	if o.FlagAfter <= 0 {
		return nil
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.CalmLimit <= 0 {
		o.CalmLimit = DefaultCalmLimit
	}
	if o.MaxFingerprints <= 0 {
		o.MaxFingerprints = DefaultMaxFingerprints
	}
	return &Evidence{opts: o, seed: maphash.MakeSeed(), m: make(map[string]*entry)}
}

// Quarantined records that id, carrying the fingerprint key, was
// quarantined at now.
func (e *Evidence) Quarantined(key string, id identity.ID, now time.Time) {
	e.update(key, id, now, func(en *entry, h uint64, t int64) {
		was := e.flaggedLocked(en, t)
		// A calm identity that turned out a bot is no evidence of people.
		en.calm = slices.DeleteFunc(en.calm, func(c stamp) bool { return c.id == h })
		en.quarantined = slices.DeleteFunc(en.quarantined, func(s stamp) bool { return s.id == h })
		if len(en.quarantined) == e.opts.FlagAfter {
			en.quarantined = slices.Delete(en.quarantined, 0, 1)
		}
		en.quarantined = append(en.quarantined, stamp{id: h, at: t})
		if !was && e.flaggedLocked(en, t) {
			en.since = t
		}
	})
}

// Calm records that id, carrying the fingerprint key, has been seen long
// enough without scoring in the challenge band and without a quarantine.
func (e *Evidence) Calm(key string, id identity.ID, now time.Time) {
	e.update(key, id, now, func(en *entry, h uint64, t int64) {
		if i := slices.IndexFunc(en.calm, func(c stamp) bool { return c.id == h }); i >= 0 {
			en.calm[i].at = t
			return
		}
		if len(en.calm) < e.opts.CalmLimit {
			en.calm = append(en.calm, stamp{id: h, at: t})
			return
		}
		// Full: the identity seen calm longest ago makes room.
		old := 0
		for i, c := range en.calm {
			if c.at < en.calm[old].at {
				old = i
			}
		}
		en.calm[old] = stamp{id: h, at: t}
	})
}

// update calls f with key's entry (created if need be), id's hash and now
// in Unix ns, under the lock; it does nothing without evidence, key or room.
func (e *Evidence) update(key string, id identity.ID, now time.Time, f func(en *entry, h uint64, t int64)) {
	if e == nil || key == "" {
		return
	}
	h, t := id.Hash(e.seed), now.UnixNano()
	e.mu.Lock()
	defer e.mu.Unlock()
	if en := e.entryLocked(key, t); en != nil {
		f(en, h, t)
	}
}

// Flagged reports whether the fingerprint key is flagged at now: FlagAfter
// distinct identities carrying it were quarantined within Window, and
// fewer than CalmLimit calm identities carry it.
func (e *Evidence) Flagged(key string, now time.Time) bool {
	if e == nil || key == "" {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	en := e.m[key]
	return en != nil && e.flaggedLocked(en, now.UnixNano())
}

func (e *Evidence) flaggedLocked(en *entry, t int64) bool {
	q := en.quarantined
	return len(q) >= e.opts.FlagAfter && q[0].at > t-int64(e.opts.Window) && e.calmLocked(en, t) < e.opts.CalmLimit
}

// calmLocked counts en's identities seen calm within calmFor windows of t:
// a fingerprint that people carry keeps being seen calm, while a bot that
// once spent requests to look calm does not keep its veto for ever.
func (e *Evidence) calmLocked(en *entry, t int64) int {
	n := 0
	for _, c := range en.calm {
		if c.at > t-calmFor*int64(e.opts.Window) {
			n++
		}
	}
	return n
}

// calmFor is how many Windows a calm sighting counts for.
const calmFor = 4

// entryLocked returns key's entry, creating it (and evicting to make
// room) when new; nil when the table is full of flagged entries.
func (e *Evidence) entryLocked(key string, t int64) *entry {
	if en := e.m[key]; en != nil {
		en.last = t
		return en
	}
	if len(e.m) >= e.opts.MaxFingerprints && !e.evictLocked(t) {
		return nil
	}
	en := &entry{last: t}
	e.m[key] = en
	return en
}

// evictLocked drops the idlest unflagged entry of a few, chosen by the
// map's random iteration order.
func (e *Evidence) evictLocked(t int64) bool {
	var victim string
	var idle int64
	n := 0
	for k, en := range e.m {
		if !e.flaggedLocked(en, t) && (victim == "" || en.last < idle) {
			victim, idle = k, en.last
		}
		if n++; n == evictSample {
			break
		}
	}
	if victim == "" {
		return false
	}
	delete(e.m, victim)
	return true
}

// Flag describes one flagged fingerprint for operators.
type Flag struct {
	Key         string    // identity.FingerprintKey's hash, never the value
	Quarantined int       // distinct identities quarantined within the window
	Calm        int       // distinct calm identities seen with it
	Since       time.Time // when it was flagged
	Last        time.Time // the latest quarantine
}

// Flags returns the fingerprints flagged at now, the most recently
// quarantined first, at most n (n <= 0: all).
func (e *Evidence) Flags(now time.Time, n int) []Flag {
	if e == nil {
		return nil
	}
	t := now.UnixNano()
	e.mu.Lock()
	var out []Flag
	for k, en := range e.m {
		if !e.flaggedLocked(en, t) {
			continue
		}
		out = append(out, Flag{
			Key: k, Quarantined: len(en.quarantined), Calm: e.calmLocked(en, t),
			Since: time.Unix(0, en.since).UTC(), Last: time.Unix(0, en.quarantined[len(en.quarantined)-1].at).UTC(),
		})
	}
	e.mu.Unlock()
	slices.SortFunc(out, func(a, b Flag) int {
		if c := b.Last.Compare(a.Last); c != 0 {
			return c
		}
		return cmp.Compare(a.Key, b.Key)
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// Count returns how many fingerprints are flagged at now, for the gauge.
func (e *Evidence) Count(now time.Time) int {
	if e == nil {
		return 0
	}
	t := now.UnixNano()
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, en := range e.m {
		if e.flaggedLocked(en, t) {
			n++
		}
	}
	return n
}

// Len returns how many fingerprints are tracked.
func (e *Evidence) Len() int {
	if e == nil {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.m)
}
