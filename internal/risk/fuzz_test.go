package risk

import (
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// FuzzObserve feeds arbitrary sequences of gaps (negative, zero, tiny,
// huge, and absurd absolute times) to the engine and checks its
// invariants: no panic, scores in [0, 100], one request counted per call,
// Peek agreeing with Observe, and finite, bounded explanations.
func FuzzObserve(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0xe8, 0x03, 0, 0, 0, 0xe8, 0x03, 0, 0, 0, 0xe8, 0x03, 0, 0})
	f.Add([]byte{0, 0xff, 0xff, 0xff, 0xff, 1, 1, 0, 0, 0, 2, 0xff, 0xff, 0xff, 0x7f, 3, 0, 0, 0, 0x80})
	seed := make([]byte, 0, 5*64)
	for i := range 64 {
		seed = append(seed, byte(i%3), byte(i*37), 0x03, 0, 0)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		e := New(Options{MaxClients: 4, Shards: 2, Confirm: 1})
		ids := [2]identitySlot{{id: testID(1)}, {id: testID(2)}}
		at := epoch
		for len(data) >= 5 {
			kind, v := data[0], int32(binary.LittleEndian.Uint32(data[1:5]))
			data = data[5:]
			switch kind % 4 {
			case 0:
				at = at.Add(time.Duration(v) * time.Millisecond)
			case 1:
				at = at.Add(time.Duration(v) * time.Microsecond)
			case 2:
				at = at.Add(time.Duration(v) * time.Second)
			case 3:
				at = time.Unix(int64(v)<<24, int64(v)) // far past and future
			}
			s := &ids[(kind>>2)&1]
			got := e.Observe(s.id, at)
			s.n++
			if got.Score > 100 {
				t.Fatalf("score %d > 100", got.Score)
			}
			if got.Requests != uint32(min(s.n, math.MaxUint32)) {
				t.Fatalf("requests %d after %d calls", got.Requests, s.n)
			}
			if got.Confirmed && got.Score < DefaultThreshold {
				t.Fatalf("confirmed at score %d", got.Score)
			}
			if got.Confirmed && got.Shared {
				t.Fatal("confirmed while shared")
			}
			if got.Score < DefaultChallengeThreshold && got.Reason != ReasonNone {
				t.Fatalf("reason %v below the challenge band (score %d)", got.Reason, got.Score)
			}
			if p, ok := e.Peek(s.id, at); !ok || p != got {
				t.Fatalf("Peek = %+v, %v; Observe gave %+v", p, ok, got)
			}
		}
		for _, s := range ids {
			x, ok := e.Explain(s.id, at)
			if ok != (s.n > 0) {
				t.Fatalf("%v tracked %v after %d requests", s.id, ok, s.n)
			}
			if !ok {
				continue
			}
			if len(x.Recent) > ringSize || x.LastSeen.Before(x.FirstSeen) {
				t.Fatalf("summary %+v", x.Summary)
			}
			if got := scoreFromFeatures(x.Features); got != x.Score {
				t.Fatalf("features give score %d, summary %d", got, x.Score)
			}
			for _, ft := range x.Features {
				if math.IsNaN(ft.Value) || math.IsInf(ft.Value, 0) || !(ft.Probability >= 0 && ft.Probability <= 1) || !(ft.Gate >= 0 && ft.Gate <= 1) {
					t.Fatalf("feature %+v out of range", ft)
				}
			}
		}
	})
}

type identitySlot struct {
	id identity.ID
	n  uint64
}
