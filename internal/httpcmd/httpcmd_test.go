package httpcmd

import "testing"

func TestServeLimitsSet(t *testing.T) {
	// Serve builds its own http.Server; this pins the limits it uses, so a
	// refactor cannot drop the Slowloris guard unnoticed.
	if readHeaderTimeout <= 0 || readHeaderTimeout > readTimeout {
		t.Errorf("readHeaderTimeout = %v, want in (0, readTimeout=%v]", readHeaderTimeout, readTimeout)
	}
	if maxHeaderBytes <= 0 || maxHeaderBytes > 1<<20 {
		t.Errorf("maxHeaderBytes = %d, want a bound below net/http's 1 MiB default", maxHeaderBytes)
	}
}
