package dashboard

import (
	"net/http"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// streamFingerprints is the most flagged fingerprints a snapshot carries.
const streamFingerprints = 20

// FlaggedFingerprint is one TLS fingerprint that recent quarantines of
// identities carrying it have flagged. It is shown by its key, a hash
// (identity.FingerprintKey), never by the value the proxy sent.
type FlaggedFingerprint struct {
	Key         string    `json:"key"`
	Quarantined int       `json:"quarantined"` // distinct identities quarantined within the window
	Calm        int       `json:"calm"`        // distinct calm identities seen with it
	Since       time.Time `json:"since"`       // flagged since
	Last        time.Time `json:"last"`        // the latest quarantine
}

// FingerprintView is the fingerprint of an identity in the explain view.
type FingerprintView struct {
	Key     string `json:"key"`
	Flagged bool   `json:"flagged"` // new identities carrying it are confirmed faster
}

// fingerprintsResponse is the body of GET /api/v1/fingerprints.
type fingerprintsResponse struct {
	// Enabled reports that fingerprint evidence is kept at all
	// (--fingerprint-header with --fingerprint-flag-after above 0).
	Enabled bool                 `json:"enabled"`
	Flagged []FlaggedFingerprint `json:"flagged"`
}

// flagged returns at most n flagged fingerprints, nil without evidence.
func (s *server) flagged(now time.Time, n int) []FlaggedFingerprint {
	if s.fingerprints == nil {
		return nil
	}
	out := s.fingerprints(now)
	if len(out) > n {
		out = out[:n]
	}
	if out == nil {
		out = []FlaggedFingerprint{}
	}
	return out
}

// handleFingerprints serves GET /api/v1/fingerprints: the flagged TLS
// fingerprints, most recently quarantined first (at most 200).
func (s *server) handleFingerprints(w http.ResponseWriter, r *http.Request) {
	list := s.flagged(s.now(), 200)
	resp := fingerprintsResponse{Enabled: s.fingerprints != nil, Flagged: list}
	if resp.Flagged == nil {
		resp.Flagged = []FlaggedFingerprint{}
	}
	s.writeJSON(w, resp)
}

// fingerprintOf returns the fingerprint id is keyed by, or nil.
func (s *server) fingerprintOf(id identity.ID, now time.Time) *FingerprintView {
	key := id.Fingerprint()
	if key == "" {
		return nil
	}
	v := &FingerprintView{Key: key}
	for _, f := range s.flagged(now, 1<<30) {
		if f.Key == key {
			v.Flagged = true
			break
		}
	}
	return v
}
