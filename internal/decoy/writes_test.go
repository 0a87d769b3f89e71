package decoy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestBaitRefusesWrites: under --quarantine-action honeypot every request
// of a quarantined identity goes to the bait, a person's behind a shared or
// wrongly flagged address included. A write must not be acknowledged (it
// was 201 {"ok":true}, and the client believed its order went through): it
// gets a temporary failure with Retry-After, and is recorded like any
// request. OPTIONS gets an empty 204, reads the made-up documents.
func TestBaitRefusesWrites(t *testing.T) {
	for _, method := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		ring := NewRing(16)
		b := NewBait(BaitOptions{Ring: ring})
		w := httptest.NewRecorder()
		b.ServeHTTP(w, httptest.NewRequest(method, "/api/orders", strings.NewReader(`{"sku":"A1","qty":1}`)))
		body := strings.TrimSpace(w.Body.String())
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" || !strings.Contains(body, `"error"`) || strings.Contains(body, "ok") {
			t.Errorf("%s /api/orders to the decoy: %d Retry-After %q %s; want 503 with Retry-After and an error", method, w.Code, w.Header().Get("Retry-After"), body)
		}
		if got := ring.Latest(1, ""); len(got) != 1 || got[0].Method != method || got[0].BodyBytes != 20 {
			t.Errorf("%s: recorded %+v, want the write with its 20-byte body", method, got)
		}
	}
	b := NewBait(BaitOptions{Ring: NewRing(16)})
	w := httptest.NewRecorder()
	b.ServeHTTP(w, httptest.NewRequest("OPTIONS", "/api/orders", nil))
	if w.Code != http.StatusNoContent || w.Body.Len() != 0 {
		t.Errorf("OPTIONS: %d %q, want an empty 204", w.Code, w.Body.String())
	}
}
