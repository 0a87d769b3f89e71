// Package decoy is the honeypot that quarantined clients are routed to
// under --quarantine-action honeypot: a handler that answers any read
// with plausible, made-up JSON and any write with a 503 (Bait), and a
// bounded record of what each
// client asked for (Ring), with a read-only API over it (API) that Flow
// Lock's dashboard shows as "what the quarantined clients went for".
//
// The decoy knows nothing real: it reads no file, calls no service and
// holds no data but what it generates from the request path, so routing a
// bot to it can leak nothing. What it records is bounded (Ring's capacity
// and MaxBytes, and per record the header count and lengths) and masked: credentials,
// cookies and other secret-looking header values are replaced by their
// length, query values are dropped, and a name identity (an API key) is
// shown as identity.ID.Masked gives it.
package decoy

import (
	"cmp"
	"slices"
	"sync"
	"time"
	"unsafe"
)

// Header is one recorded request header, its value masked when it looks
// secret (see maskHeader).
type Header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// Record is what the decoy kept of one request.
type Record struct {
	Time     time.Time `json:"time"`
	Identity string    `json:"identity"` // masked; "(none)" without the identity header
	Method   string    `json:"method"`
	Path     string    `json:"path"`  // without the query, clipped
	Query    string    `json:"query"` // parameter names only: "id=…&page=…"
	Headers  []Header  `json:"headers"`
	// BodyBytes is the size of the request body as the request declared
	// it (Content-Length), at most MaxBody; BodyCut is set when it
	// declared more. BodyUnsized is set for a body sent without a size
	// (chunked): BodyBytes is then 0. The bait never reads a body (see
	// Bait.ServeHTTP), so these are what the client said it sends.
	BodyBytes   int64 `json:"body_bytes"`
	BodyCut     bool  `json:"body_cut,omitempty"`
	BodyUnsized bool  `json:"body_unsized,omitempty"`
	// Micros is how long the decoy took to answer, in microseconds.
	Micros int64 `json:"micros"`
}

// Ring keeps the latest records, at most its capacity and at most MaxBytes
// of memory in all: the oldest go first. It is safe for concurrent use.
type Ring struct {
	mu     sync.Mutex // guards the following fields
	buf    []Record   // len is the capacity; the records are buf[first:first+n], wrapping
	first  int        // index of the oldest record
	n      int        // records held
	budget int        // bytes the records may take beyond their slots in buf
	used   int        // bytes the held records take beyond their slots
	total  uint64     // records ever added
}

// DefaultCapacity is the records a Ring keeps when given no capacity.
const DefaultCapacity = 4096

// MaxCapacity is the largest capacity: its slots alone (136 bytes each)
// take about a quarter of MaxBytes, and the records of the bait's
// smallest requests (an address, a short path and a header or two) fit in
// the rest.
const MaxCapacity = 16384

// MaxBytes is the memory a Ring's records take at most, their slots
// included: 8 MiB. A record takes up to about 7 KB (24 headers of 64-byte
// names and 128-byte values, a 256-byte path and query), so a ring of
// large records holds fewer than its capacity (about 1,200).
const MaxBytes = 8 << 20

// Sizes the ring counts records by (see size).
const (
	recordSlot = int(unsafe.Sizeof(Record{}))
	headerSlot = int(unsafe.Sizeof(Header{}))
)

// NewRing returns a ring of capacity records (at most MaxCapacity); 0 or
// less means DefaultCapacity.
func NewRing(capacity int) *Ring {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	capacity = min(capacity, MaxCapacity)
	return &Ring{buf: make([]Record, capacity), budget: MaxBytes - capacity*recordSlot}
}

// size is the heap a record holds beyond its slot: its strings and
// headers, each rounded up as the allocator does for small objects. The
// bait makes every string of a record its own (see Bait.ServeHTTP), so
// this is what the record keeps alive.
func size(r *Record) int {
	heap := func(n int) int { // Go's size classes: steps of 16 bytes to 256, then of 32 and more
		if n <= 256 {
			return (n + 15) &^ 15
		}
		return (n + 31) &^ 31
	}
	n := heap(len(r.Identity)) + heap(len(r.Method)) + heap(len(r.Path)) + heap(len(r.Query)) + heap(cap(r.Headers)*headerSlot)
	for _, h := range r.Headers {
		n += heap(len(h.Name)) + heap(len(h.Value))
	}
	return n
}

// Add keeps r, dropping the oldest records while the ring is full or over
// its bytes.
func (g *Ring) Add(r Record) {
	need := size(&r)
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total++
	if need > g.budget {
		return // cannot happen with the bait's bounds; never hold more than MaxBytes
	}
	for g.n > 0 && (g.n == len(g.buf) || g.used+need > g.budget) {
		g.used -= size(&g.buf[g.first])
		g.buf[g.first] = Record{} // let its strings go
		g.first = (g.first + 1) % len(g.buf)
		g.n--
	}
	g.buf[(g.first+g.n)%len(g.buf)] = r
	g.n++
	g.used += need
}

// at returns the i-th newest record held (0 is the newest); g.mu is held.
func (g *Ring) at(i int) Record {
	return g.buf[(g.first+g.n-1-i)%len(g.buf)]
}

// Latest returns up to limit records, newest first; with identity not "",
// only that identity's.
func (g *Ring) Latest(limit int, identity string) []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Record, 0, min(max(limit, 0), g.n))
	for i := range g.n {
		if len(out) >= limit {
			break
		}
		if r := g.at(i); identity == "" || r.Identity == identity {
			out = append(out, r)
		}
	}
	return out
}

// PathCount is how often a path was asked for.
type PathCount struct {
	Path       string `json:"path"`
	Count      int    `json:"count"`
	Identities int    `json:"identities,omitempty"` // distinct identities that asked (top paths only)
}

// IdentitySummary is what one identity asked the decoy for.
type IdentitySummary struct {
	Identity  string      `json:"identity"`
	Requests  int         `json:"requests"`
	First     time.Time   `json:"first"`
	Last      time.Time   `json:"last"`
	Methods   []PathCount `json:"methods"` // Path holds the method
	TopPaths  []PathCount `json:"top_paths"`
	BodyBytes int64       `json:"body_bytes"`
}

// Summary is the ring at a glance: the most asked-for paths, and per
// identity what it asked for, over the records the ring holds.
type Summary struct {
	Records    int               `json:"records"`  // records held
	Total      uint64            `json:"total"`    // records ever added (older ones are gone)
	Capacity   int               `json:"capacity"` // records the ring holds at most
	TopPaths   []PathCount       `json:"top_paths"`
	Identities []IdentitySummary `json:"identities"`
}

// Bounds of a Summary.
const (
	summaryPaths         = 20 // top paths overall
	summaryIdentities    = 50 // identities, most requests first
	summaryIdentityPaths = 10 // top paths per identity
)

// Summary summarizes the records held now. It costs a copy of their slots
// (at most MaxCapacity of 136 bytes: 2.2 MB) and two passes over them outside
// the lock.
func (g *Ring) Summary() Summary {
	g.mu.Lock()
	recs := make([]Record, g.n) // the slots only: the strings are shared, never changed
	for i := range g.n {
		recs[i] = g.at(i)
	}
	total := g.total
	capacity := len(g.buf)
	g.mu.Unlock()

	type idAgg struct {
		sum     IdentitySummary
		paths   map[string]int
		methods map[string]int
	}
	paths := map[string]int{}
	ids := map[string]*idAgg{}
	for _, r := range recs {
		paths[r.Path]++
		a := ids[r.Identity]
		if a == nil {
			a = &idAgg{sum: IdentitySummary{Identity: r.Identity, First: r.Time, Last: r.Time}, paths: map[string]int{}, methods: map[string]int{}}
			ids[r.Identity] = a
		}
		a.sum.Requests++
		a.sum.BodyBytes += r.BodyBytes
		if r.Time.Before(a.sum.First) {
			a.sum.First = r.Time
		}
		if r.Time.After(a.sum.Last) {
			a.sum.Last = r.Time
		}
		a.paths[r.Path]++
		a.methods[r.Method]++
	}
	s := Summary{Records: len(recs), Total: total, Capacity: capacity, TopPaths: top(paths, summaryPaths), Identities: []IdentitySummary{}}
	// Distinct identities for the top paths only: a set per path asked
	// for would cost a map for each path a scanning bot made up.
	pathIDs := make(map[string]map[string]struct{}, len(s.TopPaths))
	for _, p := range s.TopPaths {
		pathIDs[p.Path] = map[string]struct{}{}
	}
	for _, r := range recs {
		if set := pathIDs[r.Path]; set != nil {
			set[r.Identity] = struct{}{}
		}
	}
	for i := range s.TopPaths {
		s.TopPaths[i].Identities = len(pathIDs[s.TopPaths[i].Path])
	}
	for _, a := range ids {
		a.sum.TopPaths = top(a.paths, summaryIdentityPaths)
		a.sum.Methods = top(a.methods, len(a.methods))
		s.Identities = append(s.Identities, a.sum)
	}
	slices.SortFunc(s.Identities, func(a, b IdentitySummary) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.Identity, b.Identity))
	})
	s.Identities = s.Identities[:min(len(s.Identities), summaryIdentities)]
	return s
}

// top returns the n largest counts, largest first, ties by path.
func top(counts map[string]int, n int) []PathCount {
	out := make([]PathCount, 0, len(counts))
	for p, c := range counts {
		out = append(out, PathCount{Path: p, Count: c})
	}
	slices.SortFunc(out, func(a, b PathCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Path, b.Path))
	})
	return out[:min(len(out), n)]
}
