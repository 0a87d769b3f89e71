package chaos

import (
	"net/http"
	"testing"
)

// TestBoundedServiceStarts shows the harness itself works: the binary
// starts under the limits and answers /healthz.
func TestBoundedServiceStarts(t *testing.T) {
	s := start(t)
	resp, err := http.Get("http://" + s.HTTPAddr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz = %d", resp.StatusCode)
	}
}
