package dashboard

import "time"

// Decision is one quarantine transition, as the explain view and the
// activity feed list it. The backend keeps them (Backend.Decisions); the
// dashboard keeps no copy.
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
