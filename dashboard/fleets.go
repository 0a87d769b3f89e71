package dashboard

import "net/http"

// Fleet is one group of identities that share one schedule or script, as
// /api/v1/fleets lists it (internal/fleet).
type Fleet struct {
	Kind      string   `json:"kind"`      // lockstep, period or script
	Signature string   `json:"signature"` // what the members share, for people
	Size      int      `json:"size"`      // identities that share it
	Members   []string `json:"members"`   // the first of them (at most 100), as written by IdentityText
}

// Fleets is the answer of GET /api/v1/fleets.
type Fleets struct {
	Enabled    bool    `json:"enabled"`     // fleet detection is on (--fleet-min-members > 0)
	MinMembers int     `json:"min_members"` // the smallest group called a fleet
	Tracked    int     `json:"tracked"`     // identities the detector keeps a track of
	Dropped    uint64  `json:"dropped"`     // requests not noted because its queue was full
	Imported   uint64  `json:"imported"`    // requests other replicas noted, added from Redis
	Unshipped  uint64  `json:"unshipped"`   // requests this replica noted that its full outbox dropped
	Refused    uint64  `json:"refused"`     // batches from Redis refused because a clock was off
	Stale      uint64  `json:"stale"`       // imported requests dropped as too old or in the future
	Fleets     []Fleet `json:"fleets"`      // largest first
}

// handleFleets serves GET /api/v1/fleets: the fleets found at the last
// sweep, members shown as every other view shows identities.
func (s *server) handleFleets(w http.ResponseWriter, r *http.Request) {
	var f Fleets
	if s.fleets != nil {
		f = s.fleets()
	}
	out := f
	out.Fleets = make([]Fleet, len(f.Fleets))
	for i, g := range f.Fleets {
		members := make([]string, len(g.Members))
		for j, m := range g.Members {
			members[j] = s.display(m)
		}
		g.Members = members
		out.Fleets[i] = g
	}
	s.writeJSON(w, out)
}
