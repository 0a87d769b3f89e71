package decoy

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
)

// TestRingMemoryWithinMaxBytes: a ring keeps at most MaxBytes (8 MiB) of
// records, whatever they hold and whatever its capacity. Filled with the
// largest records a client can make through a proxy (30 headers of long
// names and values, a long path and query) the default ring used to keep
// about 31 MB: clipped strings shared the request's memory, and 4096
// records of up to 7 KB do not fit in 8 MB. Filled with the smallest
// records, the largest ring (MaxCapacity) must fit too. Measured as the
// heap the ring keeps after a GC.
func TestRingMemoryWithinMaxBytes(t *testing.T) {
	large := func(i int) *http.Request {
		q := strings.Repeat("pppppppppppppppppppppppppppppppppppppppppppppppppppppppppppppp=1&", 10)
		r := httptest.NewRequest("GET", fmt.Sprintf("/%d/%s?%s", i, strings.Repeat("a", 400), q), nil)
		for h := range 30 {
			r.Header[http.CanonicalHeaderKey(fmt.Sprintf("x-%02d-%d-%s", h, i, strings.Repeat("n", 80)))] = []string{strings.Repeat("v", 200) + fmt.Sprint(i)}
		}
		return r
	}
	small := func(i int) *http.Request {
		r := httptest.NewRequest("GET", fmt.Sprintf("/%d", i), nil)
		r.Header.Set("X-Forwarded-For", "203.0.113.7")
		return r
	}
	for _, tc := range []struct {
		name     string
		capacity int
		request  func(int) *http.Request
		requests int // enough to fill the ring and go round
	}{
		{"default ring, largest records", DefaultCapacity, large, 2000},
		{"largest ring, smallest records", MaxCapacity, small, MaxCapacity + 1000},
		{"largest ring, largest records", MaxCapacity, large, 2000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			ring := NewRing(tc.capacity)
			b := NewBait(BaitOptions{Ring: ring})
			for i := range tc.requests {
				b.ServeHTTP(httptest.NewRecorder(), tc.request(i))
			}
			runtime.GC()
			runtime.ReadMemStats(&after)
			mb := float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
			held := ring.Summary().Records
			t.Logf("ring of %d: %d records held, %.1f MiB", tc.capacity, held, mb)
			if mb > float64(MaxBytes)/(1<<20)*1.05 {
				t.Errorf("the ring keeps %.1f MiB; MaxBytes is %d MiB", mb, MaxBytes>>20)
			}
			if held < 900 { // about 9 KB a record at most
				t.Errorf("only %d records held", held)
			}
			runtime.KeepAlive(ring)
		})
	}
}
