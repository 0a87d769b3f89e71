package dashboard

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

const (
	streamIdentities = 24  // riskiest identities in a snapshot
	streamQuarantine = 200 // quarantine entries in a snapshot, soonest release first
	streamEvents     = 14  // latest decisions in a snapshot
)

// Snapshot is the data of one "snapshot" event of /api/v1/stream: all the
// page shows, computed once per tick for every open dashboard.
type Snapshot struct {
	Time    time.Time `json:"time"`    // server time, for countdowns
	Version string    `json:"version"` // flowlock-authz version
	Mode    string    `json:"mode"`    // "enforce" or "shadow"
	Admin   bool      `json:"admin"`   // an admin token is configured: mutations are possible
	Clients int       `json:"clients"` // dashboards connected to the stream
	Stats   Stats     `json:"stats"`
	// Identities are the riskiest tracked identities (at most 24).
	Identities []Identity `json:"identities"`
	// Quarantine lists the quarantined identities, soonest release first
	// (at most 200; QuarantineTotal counts them all).
	Quarantine      []Quarantine `json:"quarantine"`
	QuarantineTotal int          `json:"quarantine_total"`
	Lists           Lists        `json:"lists"`
	// Events are the latest quarantine transitions, newest first.
	Events []Decision `json:"events"`
	// Warnings are misconfigurations to show as a banner: requests that
	// could not be read the configured way. Empty when all is well.
	Warnings []Warning `json:"warnings"`
	// Sharing is the link to the other replicas; absent without one.
	Sharing *Sharing `json:"sharing,omitempty"`
	// Fingerprints are the flagged TLS fingerprints (at most 20); absent
	// without fingerprint evidence.
	Fingerprints []FlaggedFingerprint `json:"fingerprints,omitempty"`
}

// snapshot builds the current Snapshot.
func (s *server) snapshot(clients int) Snapshot {
	now := s.now()
	qs, total := s.backend.Quarantined(streamQuarantine, now)
	if len(qs) > streamQuarantine {
		qs = qs[:streamQuarantine]
	}
	if qs == nil {
		qs = []Quarantine{}
	}
	total = max(total, len(qs))
	st := s.tracker.Stats(now)
	st.Tracked = s.backend.Tracked()
	st.Quarantined = total

	ids := s.backend.Identities(streamIdentities, now)
	if len(ids) > streamIdentities {
		ids = ids[:streamIdentities]
	}
	if ids == nil {
		ids = []Identity{}
	}
	lists := s.backend.Lists()
	if lists.Allow == nil {
		lists.Allow = []string{}
	}
	if lists.Deny == nil {
		lists.Deny = []string{}
	}
	s.displayQuarantine(qs)
	s.displayIdentities(ids)
	events := s.backend.Decisions(streamEvents, identity.ID{})
	if events == nil {
		events = []Decision{}
	}
	s.displayDecisions(events)
	var sharing *Sharing
	if s.sharing != nil {
		sh := s.sharing()
		sharing = &sh
	}
	warnings := []Warning{}
	if s.warnings != nil {
		if w := s.warnings(now); w != nil {
			warnings = w
		}
	}
	return Snapshot{
		Warnings:        warnings,
		Sharing:         sharing,
		Time:            now,
		Version:         s.version,
		Mode:            s.mode,
		Admin:           s.adminOn,
		Clients:         clients,
		Stats:           st,
		Identities:      ids,
		Quarantine:      qs,
		QuarantineTotal: total,
		Lists:           lists,
		Events:          events,
		Fingerprints:    s.flagged(now, streamFingerprints),
	}
}

// snapshotEvent encodes the current snapshot as one server-sent event. The
// JSON is one line (encoding/json escapes newlines in strings), so it fits
// a single data: field.
func (s *server) snapshotEvent(clients int) []byte {
	b, err := json.Marshal(s.snapshot(clients))
	if err != nil {
		s.log.Error("encode snapshot", "err", err)
		return []byte(": snapshot failed; see the flowlock-authz log\n\n")
	}
	out := make([]byte, 0, len(b)+48)
	out = append(out, "id: "...)
	out = strconv.AppendUint(out, s.seq.Add(1), 10)
	out = append(out, "\nevent: snapshot\ndata: "...)
	out = append(out, b...)
	return append(out, "\n\n"...)
}
