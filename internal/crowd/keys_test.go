package crowd

import (
	"fmt"
	"testing"
	"time"
	"unsafe"

	"github.com/flowlock/flowlock/internal/identity"
)

// TestNoteBoundedWhenCallersReuseKeyBytes: a caller that reuses the bytes
// of a name identity after Note (as the lean gRPC path's buffer does) must
// not make the table lose entries it can no longer find, and so outgrow
// its bound.
func TestNoteBoundedWhenCallersReuseKeyBytes(t *testing.T) {
	a := New(0, 64)
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	buf := make([]byte, 12)
	for i := range 5000 {
		copy(buf, fmt.Sprintf("user-%07d", i))
		id, _ := identity.FromName(unsafe.String(&buf[0], len(buf)))
		a.Note(id, "ua", now)
	}
	if n := a.Len(); n > 64 {
		t.Errorf("%d entries, bound 64", n)
	}
}
