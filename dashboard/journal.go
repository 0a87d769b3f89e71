package dashboard

import (
	"sync"
	"time"
)

// Decision is one quarantine transition, as the explain view and the
// activity feed list it.
type Decision struct {
	Time     time.Time `json:"time"`
	Identity string    `json:"identity"`
	// Action is "admitted" (by the detector), "banned", "extended",
	// "released" (by an operator), "expired" (the quarantine healed), or
	// "evicted" (ended early to make room: the quarantine is full).
	Action  string    `json:"action"`
	Reason  string    `json:"reason,omitempty"`
	Score   int       `json:"score,omitempty"`
	Strikes int       `json:"strikes,omitempty"`
	Until   time.Time `json:"until,omitzero"` // end of the quarantine, for admitted, banned and extended
	// By is who acted: "detector", "operator", "ttl" or "capacity".
	By string `json:"by"`
}

// Journal actions.
const (
	actionAdmitted = "admitted"
	actionBanned   = "banned"
	actionExtended = "extended"
	actionReleased = "released"
	actionExpired  = "expired"
	actionEvicted  = "evicted"
)

// journalSize bounds the journal: the last this many decisions are kept,
// whatever the number of identities.
const journalSize = 1000

// journal is a ring of the latest quarantine transitions, as the backend
// recorded them: every admission, ban, extension, release, expiry and
// eviction, whoever made it, without ever walking the quarantine. catchUp
// copies what is new; the stream does every tick while a dashboard is
// open, and the explain view on every request. If more transitions happen
// between two looks than the backend keeps (an attack that fills the
// quarantine), the journal shows the latest and misses the older ones. It
// is safe for concurrent use.
type journal struct {
	mu     sync.Mutex // guards the following fields
	ring   [journalSize]Decision
	next   int    // slot of the next decision
	n      int    // decisions held, up to journalSize
	cursor uint64 // the backend's number of the latest decision taken
}

// eventSource is the part of Backend the journal reads.
type eventSource interface {
	Events(after uint64) ([]Decision, uint64)
}

// catchUp takes the decisions the backend recorded since the last call.
func (j *journal) catchUp(b eventSource) {
	j.mu.Lock()
	defer j.mu.Unlock()
	ds, next := b.Events(j.cursor)
	for _, d := range ds {
		j.addLocked(d)
	}
	j.cursor = next
}

func (j *journal) addLocked(d Decision) {
	j.ring[j.next] = d
	j.next = (j.next + 1) % journalSize
	j.n = min(j.n+1, journalSize)
}

// latest returns up to limit decisions, newest first, that match keep (nil
// keeps all).
func (j *journal) latest(limit int, keep func(*Decision) bool) []Decision {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := []Decision{}
	for k := 1; k <= j.n && len(out) < limit; k++ {
		d := &j.ring[(j.next-k+journalSize)%journalSize]
		if keep == nil || keep(d) {
			out = append(out, *d)
		}
	}
	return out
}
