// Package offheap keeps large, long-lived, pointer-free arrays outside the
// Go heap, in memory mapped from the operating system.
//
// Why: the GC sets its next goal at twice the live heap (GOGC=100), so
// every byte of a long-lived table on the heap costs about two bytes of RSS
// at default settings. Measured with the real binary: 445 B of live heap
// per client became 800 B of RSS. Mapped memory is not scanned and not
// counted in the heap goal, so a table costs its bytes and no more, and its
// pages are resident only once touched. The GC cannot see into it, so only
// types without pointers may live there: Alloc checks, and keeps any other
// type on the heap.
package offheap

import (
	"os"
	"reflect"
	"runtime"
	"unsafe"
)

// Min is the size from which an array is mapped instead of allocated on
// the Go heap: one page. Smaller arrays are not worth a mapping of their
// own.
var Min = max(4096, os.Getpagesize())

// Array is n zeroed Ts, on the Go heap or mapped.
type Array[T any] struct {
	S      []T
	mapped bool
}

// Alloc returns n zeroed Ts, mapped when they take at least Min bytes and
// T holds no pointer. When mapping fails (or the system has no anonymous
// mappings) it falls back to the heap: correct, only paced by the GC.
func Alloc[T any](n int) Array[T] {
	var zero T
	size := n * int(unsafe.Sizeof(zero))
	if size >= Min && PointerIn(reflect.TypeFor[T]()) == "" {
		if b, err := mapAnon(size); err == nil {
			return Array[T]{S: unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b))), n), mapped: true}
		}
	}
	return Array[T]{S: make([]T, n)}
}

// Mapped reports whether a lives outside the Go heap.
func (a *Array[T]) Mapped() bool { return a.mapped }

// Free returns a mapped array to the system (the GC takes back a heap
// one). a must not be used afterwards.
func (a *Array[T]) Free() {
	if a.mapped && len(a.S) > 0 {
		var zero T
		unmapAnon(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(a.S))), len(a.S)*int(unsafe.Sizeof(zero))))
	}
	*a = Array[T]{}
}

// PointerIn names a field of typ that is or holds a pointer, or returns ""
// when typ holds none (numbers, booleans, arrays and structs of them).
func PointerIn(typ reflect.Type) string {
	switch typ.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return ""
	case reflect.Array:
		return PointerIn(typ.Elem())
	case reflect.Struct:
		for f := range typ.Fields() {
			if p := PointerIn(f.Type); p != "" {
				return f.Name + "." + p
			}
		}
		return ""
	}
	return typ.String()
}

// FreeWhenCollected frees a once owner is unreachable: for a table that
// lives as long as the value holding it. An array on the heap needs
// nothing (the GC takes it back with its owner).
func FreeWhenCollected[O, T any](owner *O, a Array[T]) {
	if a.mapped {
		runtime.AddCleanup(owner, func(a Array[T]) { a.Free() }, a)
	}
}
