package fingerprint

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// TestCalmSightingsExpire: a bot that once showed CalmLimit calm
// identities with its own TLS stack (20 addresses x 50 quiet requests)
// must not keep the fingerprint from being flagged for ever: calm
// sightings count for four windows.
func TestCalmSightingsExpire(t *testing.T) {
	e := New(Options{FlagAfter: 3})
	key := identity.FingerprintKey("t13d1516h2_8daaf6152771_bot")
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for i := range DefaultCalmLimit {
		e.Calm(key, identity.FromAddr(netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", i+1)), 64), t0)
	}
	later := t0.Add(6 * time.Hour) // far beyond Window
	for i := range 50 {
		e.Quarantined(key, identity.FromAddr(netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", i+1)), 64), later.Add(time.Duration(i)*time.Second))
	}
	if !e.Flagged(key, later.Add(time.Minute)) {
		t.Errorf("50 quarantines within a minute do not flag a fingerprint whose calm identities were seen 6 h ago")
	}
}
