// Package decoy is the honeypot that quarantined clients are routed to
// under --quarantine-action honeypot: a handler that answers any request
// with plausible, made-up JSON (Bait), and a bounded record of what each
// client asked for (Ring), with a read-only API over it (API) that Flow
// Lock's dashboard shows as "what the quarantined clients went for".
//
// The decoy knows nothing real: it reads no file, calls no service and
// holds no data but what it generates from the request path, so routing a
// bot to it can leak nothing. What it records is bounded (Ring's capacity,
// and per record the header count and lengths) and masked: credentials,
// cookies and other secret-looking header values are replaced by their
// length, query values are dropped, and a name identity (an API key) is
// shown as identity.ID.Masked gives it.
package decoy

import (
	"cmp"
	"slices"
	"sync"
	"time"
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
	// BodyBytes is the size of the request body, counted up to the
	// bait's read limit; BodyCut is set when the body went on past it.
	BodyBytes int64 `json:"body_bytes"`
	BodyCut   bool  `json:"body_cut,omitempty"`
	// Micros is how long the decoy took to answer, reading the body
	// included, in microseconds.
	Micros int64 `json:"micros"`
}

// Ring keeps the latest records, at most its capacity: the oldest is
// overwritten. It is safe for concurrent use.
type Ring struct {
	mu    sync.Mutex // guards the following fields
	buf   []Record
	next  int    // index the next record goes to
	total uint64 // records ever added
}

// DefaultCapacity is the records a Ring keeps when given no capacity. With
// the bounds of a record (about 2 KB at most) that is at most 8 MB.
const DefaultCapacity = 4096

// NewRing returns a ring of capacity records; 0 or less means
// DefaultCapacity.
func NewRing(capacity int) *Ring {
	if capacity <= 0 {
		capacity = DefaultCapacity
	}
	return &Ring{buf: make([]Record, 0, capacity)}
}

// Add keeps r, overwriting the oldest record when the ring is full.
func (g *Ring) Add(r Record) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total++
	if len(g.buf) < cap(g.buf) {
		g.buf = append(g.buf, r)
		return
	}
	g.buf[g.next] = r
	g.next = (g.next + 1) % len(g.buf)
}

// Latest returns up to limit records, newest first; with identity not "",
// only that identity's.
func (g *Ring) Latest(limit int, identity string) []Record {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Record, 0, min(max(limit, 0), len(g.buf)))
	for i := range len(g.buf) {
		if len(out) >= limit {
			break
		}
		r := g.buf[(g.next-1-i+2*len(g.buf))%len(g.buf)]
		if identity == "" || r.Identity == identity {
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

// Summary summarizes the records held now. It costs one pass over them
// (at most the ring's capacity) outside the lock.
func (g *Ring) Summary() Summary {
	g.mu.Lock()
	recs := slices.Clone(g.buf)
	total := g.total
	capacity := cap(g.buf)
	g.mu.Unlock()

	type idAgg struct {
		sum     IdentitySummary
		paths   map[string]int
		methods map[string]int
	}
	paths := map[string]int{}
	pathIDs := map[string]map[string]struct{}{}
	ids := map[string]*idAgg{}
	for _, r := range recs {
		paths[r.Path]++
		if pathIDs[r.Path] == nil {
			pathIDs[r.Path] = map[string]struct{}{}
		}
		pathIDs[r.Path][r.Identity] = struct{}{}
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
