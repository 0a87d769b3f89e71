package authz

import (
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/flowlock/flowlock/internal/quarantine"
)

// floodFixture is the load harness's comparison in one process: n bots
// each send botRequests Checks at a fixed period, as in test/load, and are
// then hammered in a shuffled order, one Check every 25µs of the fixture's
// clock. On the deny path they were quarantined by that rhythm (each at its
// own time, each with the score its rhythm earns as it drifts); on the
// allow path they are allow-listed, so timed and scored alike but never
// quarantined. It returns the request of each bot, in the order to send
// them.
func floodFixture(b *testing.B, path string, n int) (*fixture, []mem.BufferSlice) {
	b.Helper()
	var s setup
	if path == "allow" {
		s.lists = quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.44.0.0/16")}, nil)
	}
	f := newFixture(b, s)
	f.srv.rec = nopRecorder{}
	f.srv.now = func() time.Time {
		f.now = f.now.Add(25 * time.Microsecond)
		return f.now
	}
	reqs := make([]mem.BufferSlice, n)
	for i := range reqs {
		req := request(netip.AddrFrom4([4]byte{10, 44, byte(i >> 8), byte(i)}).String(), nil)
		raw, err := proto.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = mem.BufferSlice{mem.SliceBuffer(raw)}
	}
	const botRequests, period = 30, 200 * time.Millisecond
	start := f.now
	for k := range botRequests {
		for i, req := range reqs {
			f.now = start.Add(time.Duration(k)*period + time.Duration(i)*period/time.Duration(n))
			if _, err := leanCall(f.srv, req); err != nil {
				b.Fatal(err)
			}
		}
	}
	if path == "deny" && f.q.Len() != n {
		b.Fatalf("%d of %d bots quarantined", f.q.Len(), n)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(reqs), func(i, j int) { reqs[i], reqs[j] = reqs[j], reqs[i] })
	return f, reqs
}

// BenchmarkLeanCheckFlood is BenchmarkLeanCheck over many clients, as the
// load harness measures it: the deny path is a flood of quarantined bots
// whose answers differ in score and Retry-After, the allow path the same
// clients allow-listed. The deny path must cost no more than the allow
// path.
func BenchmarkLeanCheckFlood(b *testing.B) {
	for _, path := range []string{"allow", "deny"} {
		b.Run("path="+path, func(b *testing.B) {
			f, reqs := floodFixture(b, path, 1000)
			b.ReportAllocs()
			cpu := processCPU()
			i := 0
			for b.Loop() {
				out, err := leanCall(f.srv, reqs[i%len(reqs)])
				if err != nil || out.Len() == 0 {
					b.Fatal(err)
				}
				i++
			}
			b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkCachedDenyAnswer is the deny cache's lookup: for one answer
// repeated, and for a flood's spread of scores over a few seconds of
// Retry-After, each answer built once before the loop.
func BenchmarkCachedDenyAnswer(b *testing.B) {
	for _, spread := range []struct {
		name           string
		scores, retrys int
	}{{"one", 1, 1}, {"flood", 41, 8}} {
		b.Run("answers="+spread.name, func(b *testing.B) {
			var ds []Decision
			for r := range spread.retrys {
				for s := range spread.scores {
					ds = append(ds, Decision{Outcome: Quarantined, Score: uint8(60 + s), Reason: "periodic", RetryAfter: 3590 + r})
				}
			}
			rand.New(rand.NewPCG(3, 4)).Shuffle(len(ds), func(i, j int) { ds[i], ds[j] = ds[j], ds[i] })
			for _, d := range ds {
				cachedDenyAnswer(d)
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				cachedDenyAnswer(ds[i%len(ds)])
				i++
			}
		})
	}
}
