package quarantine

import (
	"sync"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// EventKind says what happened to a quarantine.
type EventKind uint8

// Event kinds.
const (
	// EventAdmitted: Admit started a quarantine.
	EventAdmitted EventKind = iota + 1
	// EventBanned: Ban started a quarantine, or changed an active one.
	EventBanned
	// EventExtended: Extend moved the end of a quarantine.
	EventExtended
	// EventReleased: Release ended a quarantine by hand.
	EventReleased
	// EventExpired: a quarantine ran out. It is recorded when the List
	// notices (at the next Sweep, or when the identity is admitted, banned
	// or evicted again), but its Time is the end of the quarantine.
	EventExpired
	// EventEvicted: MaxEntries ended an active quarantine early to make
	// room for a new identity.
	EventEvicted
)

var kindNames = [...]string{
	EventAdmitted: "admitted",
	EventBanned:   "banned",
	EventExtended: "extended",
	EventReleased: "released",
	EventExpired:  "expired",
	EventEvicted:  "evicted",
}

// String returns "admitted", "banned", "extended", "released", "expired" or
// "evicted".
func (k EventKind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "unknown"
}

// Actor says who makes a transition of this kind: the detector admits, an
// operator bans, extends and releases (only the admin API does), the TTL
// expires, and the MaxEntries bound ("capacity") evicts.
func (k EventKind) Actor() string {
	switch k {
	case EventAdmitted:
		return "detector"
	case EventBanned, EventExtended, EventReleased:
		return "operator"
	case EventExpired:
		return "ttl"
	case EventEvicted:
		return "capacity"
	}
	return "unknown"
}

// Event is one quarantine transition, as Events returns it. It is a copy.
type Event struct {
	// Seq numbers events from 1, in the order the List recorded them.
	Seq  uint64
	Kind EventKind
	ID   identity.ID
	// Time is when it happened: the time passed to the call, or the end
	// of the quarantine for EventExpired.
	Time time.Time
	// Until is the end of the quarantine after the event; for released,
	// expired and evicted quarantines, when it ended.
	Until   time.Time
	Reason  string
	Strikes int
	Score   uint8
	Manual  bool
	// Remote is set when the change came from another replica (Apply,
	// Withdraw): whoever shares this list's changes must not send it back.
	Remote bool
}

// EventsKept is how many of the latest events a List keeps for Events,
// however many identities it holds.
const EventsKept = 1024

// eventLog is a ring of the latest EventsKept events. Mutations append to
// it while holding their shard's lock, so one identity's events are in the
// order they happened; the log's own lock is taken after a shard's, never
// before.
type eventLog struct {
	mu   sync.Mutex // guards the following fields
	ring [EventsKept]Event
	last uint64 // Seq of the latest event; 0 before the first
}

// add records an event about r. It does not allocate: the identity and
// reason are shared with the record, whose strings never change.
func (g *eventLog) add(kind EventKind, r *record, at int64) {
	g.addFrom(kind, r, at, false)
}

// addFrom is add with the event's origin.
func (g *eventLog) addFrom(kind EventKind, r *record, at int64, remote bool) {
	if g == nil {
		return // a shard being built by ReadState
	}
	g.mu.Lock()
	g.last++
	g.ring[g.last%EventsKept] = Event{
		Seq:     g.last,
		Kind:    kind,
		ID:      r.id,
		Time:    time.Unix(0, at).UTC(),
		Until:   time.Unix(0, r.until).UTC(),
		Reason:  r.reason,
		Strikes: r.strikes,
		Score:   r.score,
		Manual:  r.manual,
		Remote:  remote,
	}
	g.mu.Unlock()
}

// Events returns the events recorded after the one numbered after, oldest
// first, and the Seq of the latest event: the cursor for the next call
// (start with 0). Only the latest EventsKept events are kept, so a caller
// that falls behind misses the oldest; it can tell, because the first
// event's Seq is then more than after+1. ReadState records no events.
func (l *List) Events(after uint64) ([]Event, uint64) {
	g := l.events
	g.mu.Lock()
	defer g.mu.Unlock()
	first := max(after+1, g.last-min(g.last, EventsKept-1))
	if after >= g.last {
		return nil, g.last
	}
	out := make([]Event, 0, g.last-first+1)
	for seq := first; seq <= g.last; seq++ {
		out = append(out, g.ring[seq%EventsKept])
	}
	return out, g.last
}

// Latest returns, newest first, up to limit of the events the list keeps,
// only those about of unless it is the zero ID. It copies only what it
// returns, so a view of one identity costs little however full the log.
func (l *List) Latest(limit int, of identity.ID) []Event {
	g := l.events
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []Event
	oldest := g.last - min(g.last, EventsKept-1)
	for seq := g.last; seq >= max(oldest, 1) && len(out) < limit; seq-- {
		if ev := &g.ring[seq%EventsKept]; of.IsZero() || ev.ID == of {
			out = append(out, *ev)
		}
	}
	return out
}
