package fleet

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/offheap"
	"github.com/flowlock/flowlock/internal/untrusted"
)

// Defaults of Options.
const (
	// DefaultMinMembers is the smallest group called a fleet: the issue's
	// "fleets of ≥ 20 slow bots".
	DefaultMinMembers = 20
	// DefaultMaxIdentities caps the tracks: at most 19 MB with the queue
	// and a Sweep's scratch (MemoryCap), the 3.5 MB of tracks outside the
	// Go heap. It is a fixed cost, not one per client: with a million
	// clients tracked it adds a few bytes to each one's 265 B. Fleets are
	// caught among 10,000 bystanders in the simulator's trials; a flood of
	// more identities than this evicts the stalest tracks first.
	DefaultMaxIdentities = 20_000
	// DefaultQueueSize is how many notes wait for the next drain: 16,384
	// notes of 80 bytes, 1.3 MB. Run drains every drainEvery, and at once
	// when a quarter of the queue is used (wakeAt), so a replica taking
	// 80,000 timed Checks a second is drained about every 50 ms and the
	// rest of the queue absorbs bursts; while a Sweep holds the tracks, Run
	// moves the queue into a spill of up to maxSpill notes that lives only
	// until the next drain. It was 65,536 (5 MB, always) when only the
	// ticker drained: every byte of it on the heap costs about two of RSS
	// at GOGC=100 (see MemoryCap).
	DefaultQueueSize = 1 << 14
	// SweepQueueSize is the queue of a detector drained only by Sweep, in
	// virtual time (the simulator, replay): a sweep interval's notes must
	// wait there.
	SweepQueueSize = 1 << 16
	// DefaultOutbox is the outbox of a replica that shares its notes:
	// 32,768 requests (24 bytes each, in MemoryCap) wait for the next
	// exchange, a second's worth at 30,000 timed Checks a second; during a
	// Redis outage the latest are dropped and counted.
	DefaultOutbox = 1 << 15
	// DefaultSkew is Options.Skew's default: --clock-skew's.
	DefaultSkew = 5 * time.Second
	// DefaultWindow is how far back a track's requests count.
	DefaultWindow = 30 * time.Minute
)

// Surprise is how many times more members than chance explains a
// signature needs to be a fleet.
const Surprise = 4.0

// RingSize is how many of an identity's latest requests its track keeps.
const RingSize = 12

// Signature constants (see the package comment and docs/RATIONALE.md).
const (
	quietGap     = 20_000 // ms of silence that starts an episode, and the shortest slow gap
	windowWidth  = 10_000 // ms: width of a lockstep arrival window
	grids        = 4      // offset grids per quantised signature
	minEpisodes  = 3      // episodes a lockstep signature needs (its bottom-k)
	minSpan      = 60_000 // ms the episodes of a lockstep signature must span
	periodWidth  = 0.0953 // ln(1.1): width of a period bucket
	periodSpread = 1.12   // largest max/min ratio of the gaps behind a period
	periodGaps   = 4      // gaps a period is read from, at most (at least 2)
	scriptLen    = 4      // paths in a script n-gram
	maxShown     = 100    // members kept per fleet for the dashboard
	maxPaths     = 4096   // path names remembered to describe scripts
	MaxPathName  = 120    // bytes of a path a note keeps (a longer one is hashed by Note), and of a path name remembered
	evictSample  = 8      // tracks looked at to evict one (sampled LRU)
	maxSigs      = 3*grids + RingSize
	drainEvery   = 200 * time.Millisecond
	wakeAt       = 4 // Note wakes Run when 1/wakeAt of the queue is used
	maxSpill     = SweepQueueSize
	noTime       = math.MinInt64
	unknownPath  = "?"
	scriptArrow  = " → "
	minPeriodGap = quietGap
	tightSpread  = 3_000 // ms: widest arrival spread of a lockstep fleet's middle 80 % in a window
	tightTail    = 10    // per cent of members left out at each end of that spread
	confirmGaps  = 3     // gaps a period member needs to be quarantined among other periods
	quietNear    = 2     // period buckets from a fleet's own where its neighbourhood starts
	quietFar     = 4     // and where it ends: b±2 … b±4 must be empty for two gaps to do
)

// Kind is what a fleet's members share.
type Kind uint8

// The kinds of signature.
const (
	Lockstep Kind = iota + 1 // arrivals in the same windows
	Period                   // one period, any phase
	Script                   // one ordered path sequence at a slow pace
)

// String returns the kind's name, e.g. "lockstep".
func (k Kind) String() string {
	switch k {
	case Lockstep:
		return "lockstep"
	case Period:
		return "period"
	case Script:
		return "script"
	}
	return "unknown"
}

// Options configure a Detector.
type Options struct {
	// MinMembers is the smallest group of identities sharing a signature
	// that is a fleet; 0 means DefaultMinMembers.
	MinMembers int
	// MaxIdentities caps the identities tracked; at the cap a new identity
	// evicts the stalest of a few drawn at random. 0 means
	// DefaultMaxIdentities.
	MaxIdentities int
	// QueueSize is the capacity of the queue between Note and the
	// background; 0 means DefaultQueueSize. A detector that is not Run
	// (drained only by Sweep) wants SweepQueueSize.
	QueueSize int
	// SampleRate is the share of identities tracked, chosen by a hash of
	// the identity so that a sampled identity is seen whole (and the same
	// identities on every replica); 0 or ≥ 1 means all.
	SampleRate float64
	// Window is how far back requests count; 0 means DefaultWindow.
	Window time.Duration
	// Outbox is how many of the requests this detector noted may wait
	// for the other replicas (Outbox, Shipped; the replica link takes them
	// every second); beyond it they are dropped and counted. 0 keeps none:
	// one replica, or replicas that do not share.
	Outbox int
	// Skew is the largest difference between a replica's clock and
	// Redis's that its notes are trusted with (--clock-skew): another
	// replica's batch stamped further from the time Redis took it is
	// refused, and so is every batch while this replica's own clock is
	// that far off (see Import). 0 means DefaultSkew.
	Skew time.Duration
	// Admit quarantines one member of a fleet at now and reports whether
	// that started a quarantine; nil only reports fleets. It is called
	// from Sweep, never from Note, and only for members this detector
	// noted itself: another replica's notes carry a hash of the identity,
	// and the replica that saw the member admits it.
	Admit func(id identity.ID, f *Fleet, now time.Time) bool
}

// Fleet is one group of identities that share a signature.
type Fleet struct {
	Kind Kind `json:"kind"`
	// Signature says what the members share, for people.
	Signature string `json:"signature"`
	// Size is how many identities share it.
	Size int `json:"size"`
	// Members are the first of them this replica saw itself, at most
	// 100 (another replica's notes name an identity only by its hash).
	Members []identity.ID `json:"-"`
	// Key identifies the signature: equal on every replica for the same
	// members.
	Key uint64 `json:"-"`
}

// Stats are the detector's counters.
type Stats struct {
	Noted    uint64 // notes drained into tracks
	Dropped  uint64 // notes dropped because the queue was full
	Tracked  int    // identities with a track
	Evicted  uint64 // tracks evicted at MaxIdentities
	Admitted uint64 // quarantines started by Admit
	Fleets   int    // fleets found by the last Sweep
	// Imported counts the requests other replicas noted that Import added
	// (a batch sent twice adds nothing the second time);
	// Unshipped those this one noted that the full outbox dropped.
	Imported, Unshipped uint64
	// Refused counts the batches Import refused for their times: stamped
	// further than Options.Skew from Redis's clock, or read while this
	// replica's clock was; Stale the notes it dropped from accepted
	// batches for a time outside [Redis's time − Window, + Skew].
	Refused, Stale uint64
}

// note is one request handed over by Note.
type note struct {
	id   identity.ID
	path string // "" when hashed already (a long path, not kept)
	hash uint32 // the path's hash when path is ""
	at   int64  // Unix ms
}

// sent is one request waiting in the outbox: the identity's key and the
// route's hash, never the identity or the path themselves.
type sent struct {
	key  uint64
	hash uint32
	at   int64 // Unix ms
}

// track is the latest requests of one identity, oldest first.
//
// A track holds no pointer, so that the tracks live outside the Go heap
// (internal/offheap); the identity is kept beside it, in Detector.ids.
type track struct {
	// key is the identity's hash (idKey), the same on every replica.
	key  uint64
	at   [RingSize]int64
	path [RingSize]uint32
	n    uint8
	// lost is the time of the latest request pushed out of the ring
	// (noTime when none), so that the oldest kept request still knows the
	// silence before it.
	lost int64
	// admitted is the time of the latest request when Admit was last
	// called for t (noTime before): a member is admitted again only for
	// requests made since, so one that stopped is not escalated at every
	// Sweep while its track ages out of the window.
	admitted int64
}

func (t *track) last() int64 { return t.at[t.n-1] }

// Detector finds fleets. Note is safe for concurrent use and never blocks;
// the other methods take a lock and run off the Check path.
type Detector struct {
	o      Options
	sample uint64 // keep identities whose hash is below it; 0: all
	queue  chan note
	wake   chan struct{} // Note's signal to Run that the queue is filling (capacity 1)
	every  time.Duration // Run's ticker: drainEvery

	// spill holds the notes Run took from the queue while a Sweep held mu
	// (at most maxSpill); drain takes it first.
	spillMu sync.Mutex
	spill   []note

	dropped atomic.Uint64

	mu     sync.Mutex
	index  map[uint64]int32 // idKey → track
	tracks []track          // in table's memory, which holds MaxIdentities
	table  offheap.Array[track]
	// ids[i] is track i's identity when this detector noted it (zero when
	// it only imported other replicas' notes of it).
	ids       []identity.ID
	free      []int32
	paths     map[uint32]string
	rng       *rand.Rand
	noted     uint64
	evicted   uint64
	admitted  uint64
	fleets    []Fleet
	out       []sent // noted here, for the other replicas (Options.Outbox)
	imported  uint64
	unshipped uint64
	refused   uint64
	stale     uint64
	stamp     int64             // the time Outbox stamped its last batch with, Unix ms
	offClock  bool              // this replica's clock was off Redis's by more than Skew at the last Shipped
	memberOf  map[uint64]uint64 // member's key → its fleet's key, at the last Sweep

	// scratch of Sweep, kept between calls
	keys     []uint64
	arrivals []int64 // members' arrivals in a key's windows (tight)
	window   []int64 // the same in one window, sorted
	spans    []int32 // keys of track i: keys[spans[i]:spans[i+1]]
	counts   map[uint64]int32
	judged   map[uint64]bool  // key → surprising, within one Sweep
	windows  map[uint64]int32 // (grid, window) → identities with an episode in it
	busy     int32            // episode starts that make a window busy, this Sweep
	pathUse  map[uint32]int32 // path → uses in script n-grams
	episodic int              // identities with enough episodes for lockstep
	scripts  int              // script n-grams in all
}

// New returns a detector with the options o.
func New(o Options) *Detector {
	o = withDefaults(o)
	d := &Detector{
		o:        o,
		queue:    make(chan note, o.QueueSize),
		wake:     make(chan struct{}, 1),
		every:    drainEvery,
		index:    make(map[uint64]int32),
		paths:    make(map[uint32]string),
		rng:      rand.New(rand.NewPCG(1, 2)),
		counts:   make(map[uint64]int32),
		judged:   make(map[uint64]bool),
		memberOf: make(map[uint64]uint64),
		windows:  make(map[uint64]int32),
		pathUse:  make(map[uint32]int32),
	}
	if o.SampleRate > 0 && o.SampleRate < 1 {
		d.sample = uint64(o.SampleRate * (1 << 63) * 2)
	}
	// The tracks are mapped outside the Go heap, whose GC pacing would
	// double what they cost in RSS; their pages become resident as tracks
	// are used, and are unmapped when the detector is collected.
	d.table = offheap.Alloc[track](o.MaxIdentities)
	d.tracks = d.table.S[:0]
	offheap.FreeWhenCollected(d, d.table)
	return d
}

// withDefaults fills o's zero fields.
func withDefaults(o Options) Options {
	if o.MinMembers <= 0 {
		o.MinMembers = DefaultMinMembers
	}
	if o.MaxIdentities <= 0 {
		o.MaxIdentities = DefaultMaxIdentities
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Window <= 0 {
		o.Window = DefaultWindow
	}
	if o.Skew <= 0 {
		o.Skew = DefaultSkew
	}
	return o
}

// MemoryCap is the most memory a detector with options o holds, in bytes:
// its tracks, their index, the queue, the path names and the scratch of a
// Sweep. The bound test holds the detector to it under a million
// identities.
func MemoryCap(o Options) int64 {
	o = withDefaults(o)
	perTrack := int64(unsafe.Sizeof(track{})) + // the track (outside the Go heap)
		int64(unsafe.Sizeof(identity.ID{})) + // its identity
		2*(8+4) + // its index entry, at most half full
		maxSigs*(8+2*8) + 4 + // its keys, their counts, its span
		(minEpisodes+1)*8 // its arrivals (tight)
	queue := int64(o.QueueSize) * int64(unsafe.Sizeof(note{}))
	paths := int64(maxPaths) * (MaxPathName + 4 + 2*16)
	outbox := int64(o.Outbox) * int64(unsafe.Sizeof(sent{}))
	spill := int64(maxSpill) * int64(unsafe.Sizeof(note{})) // only while a Sweep holds the tracks under load
	return int64(o.MaxIdentities)*perTrack + queue + spill + paths + outbox
}

// Mapped returns the bytes a detector with options o maps outside the Go
// heap, where a GOMEMLIMIT does not see them: its tracks, resident as they
// are used.
func Mapped(o Options) int64 {
	o = withDefaults(o)
	return int64(o.MaxIdentities) * int64(unsafe.Sizeof(track{}))
}

// Note hands one request of id to the detector: what the Check path calls.
// It does not block or allocate; when the queue is full the note is
// dropped and counted. A nil detector notes nothing.
func (d *Detector) Note(id identity.ID, path string, now time.Time) {
	if d == nil {
		return
	}
	if d.sample != 0 && idHash(id) >= d.sample {
		return
	}
	n := note{id: id, path: path, at: now.UnixMilli()}
	if len(path) > MaxPathName {
		// Queued, a path keeps the request's memory alive until the
		// drain: only short ones wait, so the queue's memory is bounded
		// whatever the clients send.
		n.path, n.hash = "", pathHash(path)
	}
	select {
	case d.queue <- n:
		if len(d.queue) >= cap(d.queue)/wakeAt {
			select {
			case d.wake <- struct{}{}:
			default: // Run is woken already
			}
		}
	default:
		d.dropped.Add(1)
	}
}

// Run drains the queue into the tracks every 200 ms, and whenever Note
// finds a quarter of it used, until ctx is done, so that the queue absorbs
// bursts between sweeps. While a Sweep holds the tracks (tens of ms for a
// full table, more on a loaded machine), Run moves the queue aside into
// the spill instead, which the next drain takes first. A nil detector
// returns at once.
func (d *Detector) Run(ctx context.Context) {
	if d == nil {
		return
	}
	tk := time.NewTicker(d.every)
	defer tk.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		case <-d.wake:
		}
		if d.mu.TryLock() {
			d.drain()
			d.mu.Unlock()
		} else {
			d.spillQueue()
		}
	}
}

// spillQueue moves the queued notes into the spill, up to maxSpill of
// them there: what is left waits in the queue, where Note drops and counts
// what does not fit.
func (d *Detector) spillQueue() {
	d.spillMu.Lock()
	defer d.spillMu.Unlock()
	for len(d.spill) < maxSpill {
		select {
		case n := <-d.queue:
			d.spill = append(d.spill, n)
		default:
			return
		}
	}
}

// Sweep drains the queue, forgets requests older than the window, finds
// the fleets at now and quarantines their members through Options.Admit.
// It returns how many quarantines it started. A nil detector does nothing.
func (d *Detector) Sweep(now time.Time) int {
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drain()
	return d.analyse(now)
}

// Fleets returns the fleets the last Sweep found, largest first.
func (d *Detector) Fleets() []Fleet {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Fleet, len(d.fleets))
	for i, f := range d.fleets {
		f.Members = slices.Clone(f.Members)
		out[i] = f
	}
	return out
}

// Of returns the fleet id belonged to at the last Sweep (without its
// members), or false: for the explain view.
func (d *Detector) Of(id identity.ID) (Fleet, bool) {
	if d == nil {
		return Fleet{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	key, ok := d.memberOf[idKey(id)]
	if !ok {
		return Fleet{}, false
	}
	for _, f := range d.fleets {
		if f.Key == key {
			f.Members = nil
			return f, true
		}
	}
	return Fleet{}, false
}

// MinMembers returns the smallest group the detector calls a fleet.
func (d *Detector) MinMembers() int { return d.o.MinMembers }

// Stats returns the detector's counters.
func (d *Detector) Stats() Stats {
	if d == nil {
		return Stats{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return Stats{Noted: d.noted, Dropped: d.dropped.Load(), Tracked: len(d.index),
		Evicted: d.evicted, Admitted: d.admitted, Fleets: len(d.fleets),
		Imported: d.imported, Unshipped: d.unshipped, Refused: d.refused, Stale: d.stale}
}

// Merge adds every request in from's tracks to d's: what a replica does with
// the requests the other replicas saw (docs/RATIONALE.md, "Fleet
// detection"). Requests two replicas both hold are kept once. Do not call
// from.Merge(d) at the same time.
func (d *Detector) Merge(from *Detector) {
	type held struct {
		key  uint64
		id   identity.ID
		at   int64
		path uint32
		name string
	}
	from.mu.Lock()
	from.drain()
	var hs []held
	for j, t := range from.tracks {
		for i := range int(t.n) {
			hs = append(hs, held{t.key, from.ids[j], t.at[i], t.path[i], from.paths[t.path[i]]})
		}
	}
	from.mu.Unlock()

	d.mu.Lock()
	defer d.mu.Unlock()
	d.drain()
	for _, h := range hs {
		d.addHashed(h.key, h.id, h.name, h.path, h.at)
	}
}

// drain moves the queued notes into tracks: at most one queue's worth, so
// that producers faster than the drain cannot hold the lock forever.
func (d *Detector) drain() {
	// The spill holds older notes than the queue: take it first.
	d.takeSpill()
queue:
	for range cap(d.queue) {
		select {
		case n := <-d.queue:
			d.take(n)
		default:
			break queue
		}
	}
	// Run moves the queue into the spill while mu is held, so it may have
	// taken part of the queue meanwhile: take that too, so that a Sweep
	// analyses every note queued before it.
	d.takeSpill()
}

// takeSpill takes the notes Run spilled, and lets the spill go (it only
// grows while a Sweep holds the tracks).
func (d *Detector) takeSpill() {
	d.spillMu.Lock()
	spill := d.spill
	d.spill = nil
	d.spillMu.Unlock()
	for _, n := range spill {
		d.take(n)
	}
}

// take moves one note into its track, and into the outbox.
func (d *Detector) take(n note) {
	if n.path != "" {
		n.hash = pathHash(n.path)
	}
	key := idKey(n.id)
	d.addHashed(key, n.id, n.path, n.hash, n.at)
	if d.o.Outbox > 0 {
		if len(d.out) < d.o.Outbox {
			// Only hashes wait for Redis: the other replicas need no
			// identity, path or query string in clear.
			d.out = append(d.out, sent{key: key, hash: n.hash, at: n.at})
		} else {
			d.unshipped++
		}
	}
}

// addHashed records one request in the track of the identity whose key
// is key and reports whether it is new there. id is the identity when this
// detector saw it (zero for another replica's note); path its name when
// known ("" otherwise).
func (d *Detector) addHashed(key uint64, id identity.ID, path string, ph uint32, at int64) bool {
	d.noted++
	if _, ok := d.paths[ph]; !ok && path != "" {
		if len(d.paths) >= maxPaths {
			clear(d.paths) // names are for display only: start over
		}
		// A client's path, shown on the dashboard: clipped, and with what
		// a reader cannot see written out.
		d.paths[ph] = strings.Clone(untrusted.Visible(untrusted.Clip(routeOf(path), MaxPathName)))
	}
	i, ok := d.index[key]
	if !ok {
		i = d.slot(key)
	}
	t := &d.tracks[i]
	if d.ids[i].IsZero() && !id.IsZero() {
		d.ids[i] = id.Clone() // seen here: this replica may admit it
	}
	// Insert in time order; requests from concurrent Checks arrive nearly
	// sorted, so this is a step or two from the end.
	j := int(t.n)
	for j > 0 && t.at[j-1] > at {
		j--
	}
	for k := j - 1; k >= 0 && t.at[k] == at; k-- {
		if t.path[k] == ph {
			return false // the same request twice (a merge, a batch read twice)
		}
	}
	if int(t.n) == RingSize {
		if j == 0 {
			return false // older than everything kept
		}
		t.lost = t.at[0]
		copy(t.at[:j-1], t.at[1:j])
		copy(t.path[:j-1], t.path[1:j])
		j--
	} else {
		copy(t.at[j+1:t.n+1], t.at[j:t.n])
		copy(t.path[j+1:t.n+1], t.path[j:t.n])
		t.n++
	}
	t.at[j], t.path[j] = at, ph
	return true
}

// slot returns a fresh track for the identity whose key is key, evicting
// one at the cap.
func (d *Detector) slot(key uint64) int32 {
	var i int32
	switch {
	case len(d.free) > 0:
		i = d.free[len(d.free)-1]
		d.free = d.free[:len(d.free)-1]
	case len(d.tracks) < d.o.MaxIdentities:
		d.tracks = append(d.tracks, track{}) // within table: cap is MaxIdentities
		d.ids = append(d.ids, identity.ID{})
		i = int32(len(d.tracks) - 1)
	default:
		// Sampled LRU: the stalest of a few tracks drawn at random.
		i = int32(d.rng.IntN(len(d.tracks)))
		for range evictSample - 1 {
			k := int32(d.rng.IntN(len(d.tracks)))
			if d.tracks[k].last() < d.tracks[i].last() {
				i = k
			}
		}
		delete(d.index, d.tracks[i].key)
		d.evicted++
	}
	d.tracks[i] = track{key: key, lost: noTime, admitted: noTime}
	d.ids[i] = identity.ID{}
	d.index[key] = i
	return i
}

// drop frees track i.
func (d *Detector) drop(i int) {
	delete(d.index, d.tracks[i].key)
	d.tracks[i] = track{}
	d.ids[i] = identity.ID{}
	d.free = append(d.free, int32(i))
}

// analyse finds the fleets at now and admits their members.
//
// A key shared by MinMembers identities is a fleet only if it is also
// surprising: shared by at least Surprise times as many identities as
// chance would put there, given how common its parts are among all tracks.
// Without that test a small API (six endpoints) or a flash crowd's one busy
// minute makes coincidences that look like fleets.
func (d *Detector) analyse(now time.Time) int {
	cut := now.Add(-d.o.Window).UnixMilli()
	d.keys = d.keys[:0]
	d.spans = append(d.spans[:0], 0)
	clear(d.counts)
	clear(d.windows)
	clear(d.pathUse)
	d.episodic, d.scripts = 0, 0
	starts := 0
	for i := range d.tracks {
		t := &d.tracks[i]
		if t.n > 0 && t.last() < cut {
			d.drop(i)
		}
		if t.n > 0 {
			starts += d.countWindows(t, cut)
		}
	}
	// A window is busy when it holds room for a fleet above the
	// background: at least MinMembers episode starts, and MinMembers/2
	// more than the average window that holds any.
	d.busy = int32(d.o.MinMembers)
	if w := len(d.windows) / grids; w > 0 {
		d.busy = max(d.busy, int32(starts/w+d.o.MinMembers/2))
	}
	var sigs [maxSigs]signature
	for i := range d.tracks {
		t := &d.tracks[i]
		if t.n > 0 {
			for _, s := range d.signatures(t, cut, sigs[:0]) {
				d.keys = append(d.keys, s.key)
				d.counts[s.key]++
				if s.kind == Script {
					d.scripts++
					for _, p := range s.v {
						d.pathUse[uint32(p)]++
					}
				}
			}
		}
		d.spans = append(d.spans, int32(len(d.keys)))
	}

	d.fleets = d.fleets[:0]
	clear(d.judged)
	clear(d.memberOf)
	found := make(map[uint64]int) // key → index in d.fleets
	started := 0
	for i := range d.tracks {
		t := &d.tracks[i]
		best, size := uint64(0), int32(0)
		for _, k := range d.keys[d.spans[i]:d.spans[i+1]] {
			if c := d.counts[k]; c >= int32(d.o.MinMembers) && c > size && d.surprising(t, cut, k) {
				best, size = k, c
			}
		}
		if size == 0 {
			continue
		}
		sig := d.find(t, cut, best)
		fi, ok := found[best]
		if !ok {
			fi = len(d.fleets)
			found[best] = fi
			d.fleets = append(d.fleets, Fleet{Kind: sig.kind, Key: best, Size: int(size), Signature: d.text(sig)})
		}
		f := &d.fleets[fi]
		d.memberOf[t.key] = best
		id := d.ids[i]
		if id.IsZero() {
			continue // seen by other replicas only: the one that saw it admits it
		}
		if len(f.Members) < maxShown {
			f.Members = append(f.Members, id)
		}
		if sig.kind == Period && sig.v[2] < confirmGaps && !d.alone(sig) {
			// Two gaps that agree are common by chance among many slow
			// clients: where there are such clients, a member is counted
			// on two gaps and quarantined on three.
			continue
		}
		if d.o.Admit == nil || t.last() <= t.admitted {
			continue // nothing new since its last admission
		}
		t.admitted = t.last()
		if d.o.Admit(id, f, now) {
			started++
		}
	}
	d.admitted += uint64(started)
	slices.SortStableFunc(d.fleets, func(a, b Fleet) int { return b.Size - a.Size })
	return started
}

// countWindows counts t as present in the arrival window of each of its
// episodes, on every grid, when t has a lockstep signature's worth of them,
// and returns how many episodes it counted.
func (d *Detector) countWindows(t *track, cut int64) int {
	var starts [RingSize]int64
	n := t.episodes(cut, &starts)
	if n < minEpisodes {
		return 0
	}
	d.episodic++
	for g := range grids {
		for _, s := range starts[:n] {
			d.windows[windowKey(g, s)]++
		}
	}
	return n
}

// surprising reports whether key k, which t has, is shared by at least
// Surprise times as many identities as chance explains; the verdict is
// kept for the rest of the Sweep.
func (d *Detector) surprising(t *track, cut int64, k uint64) bool {
	if v, ok := d.judged[k]; ok {
		return v
	}
	// Chance is judged from the other identities: the group is left out
	// of the counts it would otherwise inflate, so a fleet alone on a quiet
	// site is no less surprising than one in a crowd.
	c := float64(d.counts[k])
	expected := math.Inf(1)
	s := d.find(t, cut, k)
	switch s.kind {
	case Lockstep:
		// Identities with episodes in all three windows, were they
		// independent: N·Π(n_w/N) over the others.
		n := max(float64(d.episodic)-c, 1)
		expected = n
		for _, at := range s.v[:minEpisodes] {
			expected *= max(float64(d.windows[windowKey(int(s.grid), at)])-c, 0) / n
		}
	case Period:
		// The density of periods beside it: the buckets two and three
		// away (the next one may hold the fleet's own spill), on the
		// denser side, so that a bucket at the edge of a broad spread
		// of periods is not mistaken for a peak.
		g, b := int(s.grid), s.v[1]
		below := d.counts[periodKey(g, b-3)] + d.counts[periodKey(g, b-2)]
		above := d.counts[periodKey(g, b+2)] + d.counts[periodKey(g, b+3)]
		expected = float64(max(below, above)) / 2
	case Script:
		// Runs of these four paths among the other runs, were paths
		// drawn independently.
		m := max(float64(d.scripts)-c, 1)
		expected = m
		for _, p := range s.v {
			occ := 0.0
			for _, q := range s.v {
				if q == p {
					occ++
				}
			}
			expected *= max(float64(d.pathUse[uint32(p)])-c*occ, 0) / (scriptLen * m)
		}
	}
	v := c >= Surprise*expected
	if v && s.kind == Lockstep {
		v = d.tight(cut, k)
	}
	d.judged[k] = v
	return v
}

// tight reports whether the members of lockstep key k arrived in each of its
// windows closer together than people do: their middle 80 % within
// tightSpread. The chance test alone assumes every identity is as likely as
// any other to be in a window, which a crowd reacting to the same outside
// events breaks: readers of three push alerts share three windows far more
// often than that model says, but they open the alert over several seconds
// (docs/RATIONALE.md, "Fleet detection"), while a controller's bots fire
// within a second or two of its tick.
func (d *Detector) tight(cut int64, k uint64) bool {
	d.arrivals = d.arrivals[:0]
	for i := range d.tracks {
		if slices.Contains(d.keys[d.spans[i]:d.spans[i+1]], k) {
			v := d.find(&d.tracks[i], cut, k).v
			d.arrivals = append(d.arrivals, v[:minEpisodes]...)
		}
	}
	n := len(d.arrivals) / minEpisodes
	if n == 0 {
		return false
	}
	for w := range minEpisodes {
		d.window = d.window[:0]
		for m := range n {
			d.window = append(d.window, d.arrivals[m*minEpisodes+w])
		}
		slices.Sort(d.window)
		lo, hi := n*tightTail/100, n-1-n*tightTail/100
		if d.window[hi]-d.window[lo] > tightSpread {
			return false
		}
	}
	return true
}

// alone reports whether no identity outside period signature s's fleet has
// a period near it: the buckets quietNear to quietFar away on either side,
// on s's grid, are empty. Then a member that agrees with the fleet on two
// gaps is quarantined without waiting for a third. What a third gap buys is
// protection from slow clients whose two gaps agree by chance and happen
// to fall in the fleet's bucket; their expected number there is what the
// neighbourhood holds per bucket, and an empty neighbourhood of six buckets
// (periods about 10-60 % away on each side) says it is near zero. The
// adjacent buckets are left out: the fleet's own jitter spills into them. Among many slow
// clients the neighbourhood is never empty and the third gap is required,
// as before (docs/RATIONALE.md, "A period member needs three agreeing
// gaps, unless its fleet stands alone").
func (d *Detector) alone(s signature) bool {
	g, b := int(s.grid), s.v[1]
	for k := int64(quietNear); k <= quietFar; k++ {
		if d.counts[periodKey(g, b-k)] > 0 || d.counts[periodKey(g, b+k)] > 0 {
			return false
		}
	}
	return true
}

// find returns t's signature whose key is key.
func (d *Detector) find(t *track, cut int64, key uint64) signature {
	var sigs [maxSigs]signature
	for _, s := range d.signatures(t, cut, sigs[:0]) {
		if s.key == key {
			return s
		}
	}
	return signature{}
}

// text says what signature s is, for people.
func (d *Detector) text(s signature) string {
	var b strings.Builder
	switch s.kind {
	case Lockstep:
		b.WriteString("arrive together: episodes in the same 10 s windows, e.g. ")
		for i, at := range s.v[:minEpisodes] {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(time.UnixMilli(at).UTC().Format("15:04:05"))
		}
		b.WriteString(" UTC")
	case Period:
		b.WriteString("one period: a request every ~")
		b.WriteString(time.Duration(s.v[0] * int64(time.Millisecond)).Round(time.Second).String())
		b.WriteString(" (±10 %), each at its own phase")
	case Script:
		b.WriteString("one script: ")
		for i := range scriptLen {
			if i > 0 {
				b.WriteString(scriptArrow)
			}
			p, ok := d.paths[uint32(s.v[i])]
			if !ok {
				p = unknownPath
			}
			b.WriteString(p)
		}
		b.WriteString(", 20 s or more apart")
	}
	return b.String()
}

// signature is one key of a track, with what it was made of.
type signature struct {
	key  uint64
	kind Kind
	grid uint8
	// lockstep: the three episode starts (ms); period: the period (ms),
	// its bucket and the gaps behind it; script: the path hashes.
	v [scriptLen]int64
}

// signatures appends t's signatures over its requests since cut to out,
// each key once.
func (d *Detector) signatures(t *track, cut int64, out []signature) []signature {
	f := t.since(cut)
	if f == int(t.n) {
		return out
	}
	out = d.lockstep(t, cut, out)
	out = t.period(f, out)
	out = t.script(f, out)
	return out
}

// since returns the index of t's first request at or after cut.
func (t *track) since(cut int64) int {
	f := 0
	for f < int(t.n) && t.at[f] < cut {
		f++
	}
	return f
}

// episodes puts the starts of t's episodes since cut (a request after
// quietGap of silence) in starts and returns how many there are; 0 when
// they span less than minSpan.
func (t *track) episodes(cut int64, starts *[RingSize]int64) int {
	n := 0
	for j := t.since(cut); j < int(t.n); j++ {
		prev := t.lost
		if j > 0 {
			prev = t.at[j-1]
		}
		if prev == noTime || t.at[j]-prev >= quietGap {
			starts[n] = t.at[j]
			n++
		}
	}
	if n == 0 || starts[n-1]-starts[0] < minSpan {
		return 0
	}
	return n
}

// lockstep appends the bottom-3 arrival-window keys of t's episodes on
// every grid, and again of its episodes in busy windows only when some are
// not: a member's private episodes (a few requests of its own between the
// controller's ticks) would otherwise displace the shared windows from its
// bottom-3 and hide it from the fleet.
func (d *Detector) lockstep(t *track, cut int64, out []signature) []signature {
	var starts [RingSize]int64
	n := t.episodes(cut, &starts)
	if n < minEpisodes {
		return out
	}
	for g := range grids {
		out = appendBottom(out, g, starts[:n], 0)
		var kept [RingSize]int64
		busy := kept[:0]
		for _, s := range starts[:n] {
			if d.windows[windowKey(g, s)] >= d.busy {
				busy = append(busy, s)
			}
		}
		if len(busy) >= minEpisodes && len(busy) < n {
			out = appendBottom(out, g, busy, 1)
		}
	}
	return out
}

// appendBottom appends the signature of the three windows of starts, on
// grid g, with the smallest hash: a bottom-k MinHash, which stays put as
// the set grows unless a smaller one arrives. variant keeps the keys of
// all episodes (0) and of busy ones (1) apart.
func appendBottom(out []signature, g int, starts []int64, variant uint64) []signature {
	var lo [minEpisodes]uint64
	var at [minEpisodes]int64
	for k := range lo {
		lo[k] = math.MaxUint64
	}
	for _, s := range starts {
		h := windowKey(g, s)
		for k := range lo {
			if h < lo[k] {
				copy(lo[k+1:], lo[k:minEpisodes-1])
				copy(at[k+1:], at[k:minEpisodes-1])
				lo[k], at[k] = h, s
				break
			}
		}
	}
	key := uint64(Lockstep)<<56 | variant<<48 | uint64(g)
	for _, h := range lo {
		key = mix(key, h)
	}
	sg := signature{key: key, kind: Lockstep, grid: uint8(g)}
	copy(sg.v[:], at[:])
	slices.Sort(sg.v[:minEpisodes])
	return append(out, sg)
}

// windowKey is the hash of the arrival window of time at (ms) on grid g.
func windowKey(g int, at int64) uint64 {
	off := int64(g) * windowWidth / grids
	return mix(uint64(Lockstep)<<56|uint64(g), uint64(floorDiv(at+off, windowWidth)))
}

// periodKey is the key of period bucket b on grid g.
func periodKey(g int, b int64) uint64 {
	return mix(uint64(Period)<<56|uint64(g), uint64(b))
}

// period appends the period keys of t's last gaps, when they are slow and
// agree.
func (t *track) period(f int, out []signature) []signature {
	first := max(f, int(t.n)-1-periodGaps)
	if int(t.n)-1-first < 2 {
		return out
	}
	lo, hi, sum := int64(math.MaxInt64), int64(0), 0.0
	for j := first + 1; j < int(t.n); j++ {
		g := t.at[j] - t.at[j-1]
		lo, hi = min(lo, g), max(hi, g)
		sum += math.Log(float64(max(g, 1)))
	}
	if lo < minPeriodGap || float64(hi) > periodSpread*float64(lo) {
		return out
	}
	mean := sum / float64(int(t.n)-1-first)
	for g := range grids {
		b := int64(math.Floor(mean/periodWidth + float64(g)/grids))
		s := signature{key: periodKey(g, b), kind: Period, grid: uint8(g)}
		s.v[0], s.v[1], s.v[2] = int64(math.Exp(mean)), b, int64(int(t.n)-1-first)
		out = append(out, s)
	}
	return out
}

// script appends a key per run of scriptLen paths whose gaps are all slow.
func (t *track) script(f int, out []signature) []signature {
	start := len(out)
next:
	for j := f + scriptLen - 1; j < int(t.n); j++ {
		key := uint64(Script) << 56
		for k := j - scriptLen + 1; k <= j; k++ {
			if k > j-scriptLen+1 && t.at[k]-t.at[k-1] < quietGap {
				continue next
			}
			key = mix(key, uint64(t.path[k]))
		}
		for _, s := range out[start:] {
			if s.key == key {
				continue next
			}
		}
		s := signature{key: key, kind: Script}
		for k := range scriptLen {
			s.v[k] = int64(t.path[j-scriptLen+1+k])
		}
		out = append(out, s)
	}
	return out
}

// routeOf returns path without its query or fragment.
func routeOf(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		return path[:i]
	}
	return path
}

// pathHash is the FNV-1a hash of path's route (no query): a script is the
// routes a client walks, whatever the parameters.
func pathHash(path string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(path); i++ {
		c := path[i]
		if c == '?' || c == '#' {
			break
		}
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// idHash is a fixed hash of id (FNV-1a), the same in every process so that
// replicas sample the same identities.
func idHash(id identity.ID) uint64 {
	h := uint64(14695981039346656037)
	if a, ok := id.Addr(); ok {
		b := a.As16()
		for _, c := range b {
			h = (h ^ uint64(c)) * 1099511628211
		}
	} else {
		n := id.Name()
		for i := 0; i < len(n); i++ {
			h = (h ^ uint64(n[i])) * 1099511628211
		}
	}
	return mix(h, 0)
}

// idKey is the identity's key in the notes other replicas read: the first
// 8 bytes of SHA-256 of its text, as internal/redisstore names its timing
// ring, so every replica derives the same key and Redis holds no identity
// in clear (docs/RATIONALE.md, "Fleet notes carry hashes").
func idKey(id identity.ID) uint64 {
	var buf [160]byte                 // an address, a prefix or a name identity's text fits
	text, _ := id.AppendText(buf[:0]) // never fails
	sum := sha256.Sum256(text)
	return binary.BigEndian.Uint64(sum[:8])
}

// mix combines two 64-bit values into a well-spread one (splitmix64
// finaliser).
func mix(a, b uint64) uint64 {
	z := a ^ (b + 0x9e3779b97f4a7c15 + a<<6 + a>>2)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// floorDiv is a/b rounded down.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
