package dashboard

import (
	"net/http"
	"testing"
)

// TestCalibrationNeedsTheAdminToken: the recorded history is served to the
// admin token only (its route classes come from request paths), and not at
// all without a recorder.
func TestCalibrationNeedsTheAdminToken(t *testing.T) {
	h, _ := newTest(t, func(o *Options) {
		o.Calibration = func() any { return map[string]int{"windows": 7} }
	})
	if rec := do(t, h, "GET", "/api/v1/calibration", ""); rec.Code != http.StatusUnauthorized {
		t.Errorf("without the token: %d %s, want 401", rec.Code, rec.Body)
	}
	if rec := doAdmin(t, h, "GET", "/api/v1/calibration", ""); rec.Code != http.StatusOK || rec.Body.String() != `{"windows":7}`+"\n" {
		t.Errorf("with the token: %d %s", rec.Code, rec.Body)
	}
	h, _ = newTest(t, nil)
	if rec := doAdmin(t, h, "GET", "/api/v1/calibration", ""); rec.Code != http.StatusNotFound {
		t.Errorf("without a recorder: %d, want 404", rec.Code)
	}
}
