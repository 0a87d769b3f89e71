package dashboard

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/flowlock/flowlock/internal/identity"
)

// TestFleets: /api/v1/fleets lists the detector's fleets with their size
// and signature, members masked as every other view masks them, and says
// when detection is off.
func TestFleets(t *testing.T) {
	id, _ := identity.FromName("sk_live_fleetmember42")
	fleets := Fleets{Enabled: true, MinMembers: 20, Tracked: 300, Imported: 41, Unshipped: 3, Refused: 2, Stale: 7, Fleets: []Fleet{{
		Kind: "lockstep", Signature: "arrive together", Size: 25,
		Members: []string{"198.51.100.7", IdentityText(id)},
	}}}
	h, _ := newTest(t, func(o *Options) {
		o.ShowIdentities = false
		o.Fleets = func() Fleets { return fleets }
	})
	rec := do(t, h, "GET", "/api/v1/fleets", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/v1/fleets = %d %s", rec.Code, rec.Body)
	}
	var got Fleets
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Imported != 41 || got.Unshipped != 3 || got.Refused != 2 || got.Stale != 7 {
		t.Errorf("imported %d, unshipped %d, refused %d, stale %d: want the replica exchange's counts 41, 3, 2, 7",
			got.Imported, got.Unshipped, got.Refused, got.Stale)
	}
	if !got.Enabled || got.MinMembers != 20 || len(got.Fleets) != 1 || got.Fleets[0].Size != 25 || got.Fleets[0].Kind != "lockstep" {
		t.Fatalf("fleets = %+v", got)
	}
	if m := got.Fleets[0].Members; len(m) != 2 || m[0] != "198.51.100.7" || m[1] != id.Masked() {
		t.Errorf("members = %v, want the address and %s", m, id.Masked())
	}
	if strings.Contains(rec.Body.String(), "fleetmember42") {
		t.Errorf("a name identity in clear: %s", rec.Body)
	}
	if fleets.Fleets[0].Members[1] != IdentityText(id) {
		t.Error("the handler changed the backend's list")
	}

	h, _ = newTest(t, nil) // no detector
	rec = do(t, h, "GET", "/api/v1/fleets", "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"enabled":false`) || !strings.Contains(rec.Body.String(), `"fleets":[]`) {
		t.Errorf("without a detector: %d %s", rec.Code, rec.Body)
	}
}
