package strmemo

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"
)

// TestGetCopiesAndBounds: a value derived once is handed out again without
// deriving or allocating; a key read from a reused buffer keeps its own
// copy; ever new strings never grow the memo past its bound.
func TestGetCopiesAndBounds(t *testing.T) {
	m := New(4, 8)
	calls := 0
	upper := func(k string) string { calls++; return strings.ToUpper(k) }
	buf := []byte("abc")
	if got := m.Get(unsafe.String(&buf[0], len(buf)), upper); got != "ABC" {
		t.Fatalf("Get = %q, want ABC", got)
	}
	copy(buf, "xyz")
	if got := m.Get("abc", upper); got != "ABC" || calls != 1 {
		t.Fatalf("after the buffer was reused: %q after %d derivations, want ABC after 1", got, calls)
	}
	if n := testing.AllocsPerRun(100, func() { m.Get("abc", upper) }); n != 0 {
		t.Errorf("a known string allocated %v times, want 0", n)
	}
	for i := range 1000 {
		m.Get(fmt.Sprint(i), upper)
	}
	if n := m.Len(); n > 4*8 {
		t.Errorf("memo holds %d strings, bound %d", n, 4*8)
	}
}
