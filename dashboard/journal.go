package dashboard

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// Decision is one quarantine transition, as the explain view and the
// activity feed list it.
type Decision struct {
	Time     time.Time `json:"time"`
	Identity string    `json:"identity"`
	// Action is "admitted" (by the detector), "banned", "extended",
	// "released" (by an operator) or "expired" (the quarantine healed).
	Action  string    `json:"action"`
	Reason  string    `json:"reason,omitempty"`
	Score   int       `json:"score,omitempty"`
	Strikes int       `json:"strikes,omitempty"`
	Until   time.Time `json:"until,omitzero"` // end of the quarantine, for admitted, banned and extended
	// By is who acted: "detector", "operator" or "ttl".
	By string `json:"by"`
}

// Journal actions.
const (
	actionAdmitted = "admitted"
	actionBanned   = "banned"
	actionExtended = "extended"
	actionReleased = "released"
	actionExpired  = "expired"
)

// journalSize bounds the journal: the last this many decisions are kept,
// whatever the number of identities.
const journalSize = 1000

// journal is a ring of the latest quarantine transitions. It learns them
// from the admin handlers, which record what they did, and from observe,
// which compares the quarantine list with the one it saw before. It is safe
// for concurrent use.
type journal struct {
	mu   sync.Mutex // guards the following fields
	ring [journalSize]Decision
	next int                   // slot of the next decision
	n    int                   // decisions held, up to journalSize
	seen map[string]Quarantine // the quarantine as last observed, by identity; nil before the first look
}

// add records d.
func (j *journal) add(d Decision) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.addLocked(d)
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

// hasLocked reports whether the journal holds a decision on id with the
// given action at or after since.
func (j *journal) hasLocked(id, action string, since time.Time) bool {
	for k := 1; k <= j.n; k++ {
		d := &j.ring[(j.next-k+journalSize)%journalSize]
		if d.Identity == id && d.Action == action && !d.Time.Before(since) {
			return true
		}
	}
	return false
}

// observe compares the quarantine at now with the one seen at the last
// call and records what changed that the admin handlers did not already
// record: admissions by the detector (at their own time), expiries (at
// their end), and releases, bans and extensions made elsewhere (another
// replica, a restored state file). The first call only takes stock.
//
// The journal sees what it is shown: the stream looks every tick while a
// dashboard is open, and the explain view looks on every request. A
// quarantine that begins and ends between two looks is missed.
func (j *journal) observe(qs []Quarantine, now time.Time) {
	j.mu.Lock()
	defer j.mu.Unlock()
	cur := make(map[string]Quarantine, len(qs))
	for _, q := range qs {
		cur[q.Identity] = q
	}
	first := j.seen == nil
	// Changes come out in a stable order: this list's, then the gone ones.
	var changes []Decision
	for _, q := range qs {
		old, ok := j.seen[q.Identity]
		switch {
		case first || !ok || !old.Since.Equal(q.Since):
			d := Decision{Time: q.Since, Identity: q.Identity, Reason: q.Reason, Score: q.Score,
				Strikes: q.Strikes, Until: q.Until, Action: actionAdmitted, By: "detector"}
			if q.Manual {
				d.Action, d.By = actionBanned, "operator"
			}
			if !j.hasLocked(q.Identity, d.Action, q.Since.Add(-time.Second)) {
				changes = append(changes, d)
			}
		case q.Until.After(old.Until):
			if !j.hasLocked(q.Identity, actionExtended, now.Add(-time.Minute)) {
				changes = append(changes, Decision{Time: now, Identity: q.Identity, Action: actionExtended,
					Reason: q.Reason, Strikes: q.Strikes, Until: q.Until, By: "operator"})
			}
		}
	}
	for id, old := range j.seen {
		if _, ok := cur[id]; ok {
			continue
		}
		if !now.Before(old.Until) {
			changes = append(changes, Decision{Time: old.Until, Identity: id, Action: actionExpired,
				Reason: old.Reason, Strikes: old.Strikes, By: "ttl"})
		} else if !j.hasLocked(id, actionReleased, now.Add(-time.Minute)) {
			changes = append(changes, Decision{Time: now, Identity: id, Action: actionReleased,
				Reason: old.Reason, Strikes: old.Strikes, By: "operator"})
		}
	}
	sortDecisions(changes)
	for _, d := range changes {
		j.addLocked(d)
	}
	j.seen = cur
}

// sortDecisions orders ds by time, then identity, so that the ring stays
// near time order and tests see a stable order.
func sortDecisions(ds []Decision) {
	slices.SortFunc(ds, func(a, b Decision) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Identity, b.Identity)
	})
}
