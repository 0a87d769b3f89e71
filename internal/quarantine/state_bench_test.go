package quarantine

import (
	"bytes"
	"fmt"
	"testing"
)

// stateText returns a state file of n automatic quarantines at t0, as
// WriteState lays it out: one entry a line, each with a strike time.
func stateText(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"format":"flowlock-quarantine","version":1,"written_at":"2026-11-26T10:00:00Z","entries":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "\n"+`{"id":"10.%d.%d.%d","since":"2026-11-26T09:59:00Z","until":"2026-11-26T10:09:00Z","strikes":1,"strike_times":["2026-11-26T09:59:00Z"],"reason":"fixed-interval","score":91}`,
			i>>16&0xff, i>>8&0xff, i&0xff)
	}
	b.WriteString("\n]}\n")
	return b.Bytes()
}

// BenchmarkLoadState restores state files of 10 k, 100 k and 1 M entries.
// It uses ReadState, which every version has, so the same benchmark
// measures the code before and after a change.
func BenchmarkLoadState(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			data := stateText(n)
			l := New(Options{MaxEntries: 2 * n}) // room for all: shards fill unevenly
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := l.ReadState(bytes.NewReader(data), t0); err != nil {
					b.Fatal(err)
				}
			}
			if got := l.Len(); got != n {
				b.Fatalf("restored %d quarantines, want %d", got, n)
			}
		})
	}
}

// BenchmarkWriteState writes state files of 10 k, 100 k and 1 M entries:
// the write at startup, after each change and twice at shutdown.
func BenchmarkWriteState(b *testing.B) {
	for _, n := range []int{10_000, 100_000, 1_000_000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			l := New(Options{MaxEntries: 2 * n})
			if err := l.ReadState(bytes.NewReader(stateText(n)), t0); err != nil {
				b.Fatal(err)
			}
			var buf bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				if err := l.WriteState(&buf, t0); err != nil {
					b.Fatal(err)
				}
			}
			b.SetBytes(int64(buf.Len()))
		})
	}
}
