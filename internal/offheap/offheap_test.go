package offheap

import (
	"reflect"
	"runtime"
	"testing"
	"unsafe"
)

type flat struct {
	a [3]uint64
	b int32
	c bool
}

type pointered struct {
	n    int64
	name string
}

// TestAlloc: a large pointer-free array is mapped, zeroed and writable; a
// small one and one whose type holds a pointer stay on the heap, where
// the GC sees what they point to.
func TestAlloc(t *testing.T) {
	n := 2 * Min / int(unsafe.Sizeof(flat{}))
	a := Alloc[flat](n)
	if !a.Mapped() || len(a.S) != n {
		t.Fatalf("%d flat values: mapped %v, len %d", n, a.Mapped(), len(a.S))
	}
	for i := range a.S {
		if a.S[i] != (flat{}) {
			t.Fatalf("value %d not zeroed: %+v", i, a.S[i])
		}
		a.S[i].a[2], a.S[i].b, a.S[i].c = uint64(i), int32(i), true
	}
	if a.S[n-1].a[2] != uint64(n-1) || a.S[n-1].b != int32(n-1) {
		t.Fatal("a write to the mapped array did not stick")
	}
	a.Free()
	if a.S != nil || a.Mapped() {
		t.Fatal("Free left the array usable")
	}

	if small := Alloc[flat](1); small.Mapped() {
		t.Error("a one-value array was mapped: below Min it belongs on the heap")
	}
	p := Alloc[pointered](Min)
	if p.Mapped() {
		t.Fatal("an array of a type holding a string was mapped: the GC would not see its strings")
	}
	p.S[0].n, p.S[0].name = 1, string([]byte("kept alive by the heap array"))
	runtime.GC()
	if p.S[0].n != 1 || p.S[0].name != "kept alive by the heap array" {
		t.Fatal("a heap array lost what it points to")
	}
	p.Free()
}

// TestPointerIn names the field that holds a pointer.
func TestPointerIn(t *testing.T) {
	for _, c := range []struct {
		typ  reflect.Type
		want string
	}{
		{reflect.TypeFor[flat](), ""},
		{reflect.TypeFor[[4]uint32](), ""},
		{reflect.TypeFor[pointered](), "name.string"},
		{reflect.TypeFor[struct{ x [2]*int }](), "x.*int"},
		{reflect.TypeFor[[]byte](), "[]uint8"},
	} {
		if got := PointerIn(c.typ); got != c.want {
			t.Errorf("PointerIn(%v) = %q, want %q", c.typ, got, c.want)
		}
	}
}
