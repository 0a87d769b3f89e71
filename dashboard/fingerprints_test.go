package dashboard

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

const testJA4 = "t13d1516h2_8daaf6152771_02713d6af862"

// TestFlaggedFingerprints: the page's snapshot and the API list the
// flagged fingerprints by their hash, and the explain view of a composed
// identity shows its fingerprint and whether it is flagged; without
// evidence the list is absent from the snapshot and disabled in the API.
func TestFlaggedFingerprints(t *testing.T) {
	key := identity.FingerprintKey(testJA4)
	composed := identity.Composed(netip.MustParseAddr("198.51.100.9"), 64, key)
	h, fb := newTest(t, func(o *Options) {
		o.Fingerprints = func(now time.Time) []FlaggedFingerprint {
			return []FlaggedFingerprint{{Key: key, Quarantined: 5, Calm: 1, Since: now.Add(-time.Minute), Last: now}}
		}
	})
	fb.identities = append(fb.identities, Identity{Identity: composed.String(), Score: 85, Requests: 40, FirstSeen: testNow, LastSeen: testNow})

	rec := do(t, h, "GET", "/api/v1/fingerprints", "")
	var list fingerprintsResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/fingerprints = %d %s", rec.Code, rec.Body)
	}
	if !list.Enabled || len(list.Flagged) != 1 || list.Flagged[0].Key != key || list.Flagged[0].Quarantined != 5 {
		t.Errorf("fingerprints = %+v", list)
	}
	if strings.Contains(rec.Body.String(), testJA4) {
		t.Error("the fingerprint value itself is shown")
	}

	rec = do(t, h, "GET", "/api/v1/identities/"+composed.String(), "")
	var x explainResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &x); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("explain = %d %s", rec.Code, rec.Body)
	}
	if x.Fingerprint == nil || x.Fingerprint.Key != key || !x.Fingerprint.Flagged {
		t.Errorf("explain fingerprint = %+v, want %s flagged", x.Fingerprint, key)
	}
	rec = do(t, h, "GET", "/api/v1/identities/203.0.113.7", "")
	if err := json.Unmarshal(rec.Body.Bytes(), &x); err != nil || x.Fingerprint != nil {
		t.Errorf("an address identity shows a fingerprint: %+v", x.Fingerprint)
	}

	srv := newServer(Options{Backend: fb, Now: func() time.Time { return testNow }, Fingerprints: func(time.Time) []FlaggedFingerprint {
		return []FlaggedFingerprint{{Key: key}}
	}})
	if snap := srv.snapshot(0); len(snap.Fingerprints) != 1 {
		t.Errorf("snapshot fingerprints = %+v", snap.Fingerprints)
	}
	if snap := newServer(Options{Backend: fb}).snapshot(0); snap.Fingerprints != nil {
		t.Error("a snapshot without evidence lists fingerprints")
	}
	off, _ := newTest(t, nil)
	rec = do(t, off, "GET", "/api/v1/fingerprints", "")
	if !strings.Contains(rec.Body.String(), `"enabled":false`) || !strings.Contains(rec.Body.String(), `"flagged":[]`) {
		t.Errorf("without evidence: %s", rec.Body)
	}
}
