package risk

import (
	"os"
	"unsafe"
)

// offHeapMin is the size from which an array (a slab chunk or an index
// table) is mapped from the operating system instead of allocated on the Go
// heap: one page.
//
// Why: the GC sets its next goal at twice the live heap (GOGC=100), so
// every byte of a long-lived table on the heap costs about two bytes of RSS
// at default settings. Measured with the real binary: 445 B of live heap
// per client became 800 B of RSS. Memory mapped outside the heap holds no
// pointers the GC must see (slot and uint32 have none; TestOffHeapTypes),
// is not scanned and is not counted in the heap goal, so a client costs
// its bytes and no more, and pages are resident only once touched.
//
// With 256-byte slots every slab chunk is a whole number of 4 KiB pages,
// so mapping wastes nothing. Smaller arrays (the first index tables) stay
// on the heap, and an engine maps only the chunks its clients fill.
var offHeapMin = max(4096, os.Getpagesize())

// region is an array of n zeroed Ts, on the Go heap or mapped (mapped
// true). T must hold no pointers.
type region[T any] struct {
	s      []T
	mapped bool
}

// allocRegion returns n zeroed Ts. When mapping fails (or the system has no
// anonymous mappings) it falls back to the heap: correct, only paced by the
// GC as before.
func allocRegion[T any](n int) region[T] {
	var zero T
	size := n * int(unsafe.Sizeof(zero))
	if size >= offHeapMin {
		if b, err := mapAnon(size); err == nil {
			return region[T]{s: unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n), mapped: true}
		}
	}
	return region[T]{s: make([]T, n)}
}

// free returns a mapped array to the system (the GC takes back a heap
// one). f must not be used afterwards.
func (f *region[T]) free() {
	if f.mapped && len(f.s) > 0 {
		var zero T
		unmapAnon(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(f.s))), len(f.s)*int(unsafe.Sizeof(zero))))
	}
	*f = region[T]{}
}
