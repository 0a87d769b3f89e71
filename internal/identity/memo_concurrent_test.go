package identity

import (
	"fmt"
	"sync"
	"testing"
	"unsafe"
)

// TestFingerprintKeyMemoConcurrent (from the w3 review): keys stay
// right while goroutines share the memo, reuse their input buffers (as the
// lean decoder's pooled buffers are) and make shards start again. Passes
// under -race: kept as evidence that the memo (internal/strmemo) is sound.
func TestFingerprintKeyMemoConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 36)
			for i := range 20_000 {
				s := fmt.Sprintf("t13d%04dh2_%012x_%012x", g, i%3000, i)
				copy(buf, s)
				v := unsafe.String(&buf[0], len(s))
				if got, want := FingerprintKey(v), hashFingerprint(s); got != want {
					t.Errorf("key of %q = %q, want %q", s, got, want)
					return
				}
				copy(buf, "t13d0000h2_000000000000_000000000000") // the buffer is reused
			}
		}()
	}
	wg.Wait()
}
