package traffic

import (
	"hash/fnv"
	"math/rand/v2"
	"time"
)

// Request is one observed request of a stream.
type Request struct {
	// TS is when the request reached the proxy, after the observation model
	// unless the stream is Raw.
	TS time.Time
	// Path is the request path, including any query string.
	Path string
	// Method is the HTTP method.
	Method string
	// UserAgent is the client's User-Agent header.
	UserAgent string
	// Member is the index of the client that sent the request among the
	// scenario's Clients merged on this identity (0 for single-client
	// scenarios). In B12 (nat-bot) the last member is the bot.
	Member int
	// Fingerprint is the member's TLS fingerprint, as a proxy would pass
	// it (a JA4-shaped label), for scenarios that model one (B12, H15,
	// B14); "" otherwise.
	Fingerprint string
	// Hop counts the addresses a rotating client has left behind
	// (Scenario.RotateEvery): 0 for its first address, then 1, 2, ...; 0
	// for every other client.
	Hop int
}

// Option changes how a stream is generated.
type Option func(*streamOptions)

type streamOptions struct {
	raw bool
}

// Raw turns off the observation model: timestamps are the generating
// process's own, at full (nanosecond) resolution, without noise.
func Raw() Option {
	return func(o *streamOptions) { o.raw = true }
}

// Observation model of DETECTION.md §6.1.
const (
	noiseSD = 5 * time.Millisecond // Gaussian timestamp noise
	quantum = time.Millisecond     // timestamp resolution
)

// Stream yields the requests of one identity in time order. It is not safe
// for concurrent use. Create one with [Scenario.Stream].
type Stream struct {
	start   time.Time
	horizon time.Duration
	raw     bool
	noise   *rand.Rand    // observation noise; separate, so Raw sees the same process
	last    time.Duration // offset of the last observed request
	members []member      // a binary min-heap on (ev.at, idx)
	uaPool  []string      // see Scenario.rotateAgents
	uaDraw  *rand.Rand    // draws from uaPool; separate, so the process is unchanged
	fps     []string      // per member: its fingerprint; nil when the scenario models none
	rotate  int           // Scenario.RotateEvery
	sent    []int         // per member, requests sent so far, with rotate > 0
}

// member is one client of a stream, with its pending request.
type member struct {
	p   proc
	ev  event
	ua  string
	idx int
}

// Stream returns the requests of one identity following the scenario, from
// start until start+Horizon (exclusive), deterministically for seed: the
// same scenario, seed, start and options give the same requests. Different
// scenarios use different random streams for the same seed. A Horizon ≤ 0
// gives an empty stream; Clients < 1 counts as 1.
//
// The generating process does not depend on Horizon: a raw stream over a
// longer horizon extends the one over a shorter horizon, and an observed one
// does too except for requests within the noise of the shorter horizon's
// end, which that stream clamps inside it.
func (s Scenario) Stream(seed uint64, start time.Time, opts ...Option) *Stream {
	var o streamOptions
	for _, opt := range opts {
		opt(&o)
	}
	st := &Stream{start: start, horizon: s.Horizon, raw: o.raw}
	if s.Horizon <= 0 || (s.member == nil && s.group == nil) {
		return st
	}
	salt := scenarioSalt(s.ID)
	st.noise = rand.New(rand.NewPCG(seed, mix(salt, 1<<63)))
	if len(s.rotateAgents) > 0 {
		st.uaPool = s.rotateAgents
		st.uaDraw = rand.New(rand.NewPCG(seed, mix(salt, 1<<62)))
	}
	n := max(1, s.Clients)
	st.members = make([]member, n)
	for i := range n {
		r := rand.New(rand.NewPCG(seed, mix(salt, uint64(i))))
		var p proc
		var ua string
		if s.group != nil {
			p, ua = s.group(i, n, r, rand.New(rand.NewPCG(seed, mix(salt, 1<<62))))
		} else {
			p, ua = s.member(i, n, r)
		}
		st.members[i] = member{p: p, ev: p.next(), ua: ua, idx: i}
	}
	for i := n/2 - 1; i >= 0; i-- {
		st.down(i)
	}
	if s.fingerprint != nil {
		st.fps = make([]string, n)
		for i := range n {
			st.fps[i] = s.fingerprint(i, n)
		}
	}
	if s.RotateEvery > 0 {
		st.rotate, st.sent = s.RotateEvery, make([]int, n)
	}
	return st
}

// Next returns the next request, or false once the horizon is reached.
func (st *Stream) Next() (Request, bool) {
	if len(st.members) == 0 {
		return Request{}, false
	}
	top := &st.members[0]
	at := top.ev.at
	if at >= st.horizon {
		st.members = st.members[:0] // every pending request is later
		return Request{}, false
	}
	if !st.raw {
		at = st.observe(at)
	}
	req := Request{
		TS:        st.start.Add(at),
		Path:      top.ev.route.path,
		Method:    top.ev.route.method,
		UserAgent: top.ua,
		Member:    top.idx,
	}
	if st.uaPool != nil {
		req.UserAgent = pick(st.uaDraw, st.uaPool)
	}
	if st.fps != nil {
		req.Fingerprint = st.fps[top.idx]
	}
	if st.rotate > 0 {
		req.Hop = st.sent[top.idx] / st.rotate
		st.sent[top.idx]++
	}
	top.ev = top.p.next()
	st.down(0)
	return req, true
}

// observe applies the observation model to a raw offset: Gaussian noise,
// rounding to whole milliseconds, then clamping into [last, horizon) so that
// the order of requests is preserved and no request leaves the horizon.
func (st *Stream) observe(at time.Duration) time.Duration {
	at += time.Duration(st.noise.NormFloat64() * float64(noiseSD))
	at = max(0, (at+quantum/2)/quantum*quantum)
	if limit := (st.horizon - 1) / quantum * quantum; at > limit {
		at = limit
	}
	at = max(at, st.last)
	st.last = at
	return at
}

// less orders members by their pending request, ties by member index.
func (st *Stream) less(i, j int) bool {
	a, b := &st.members[i], &st.members[j]
	if a.ev.at != b.ev.at {
		return a.ev.at < b.ev.at
	}
	return a.idx < b.idx
}

// down restores the heap property below i.
func (st *Stream) down(i int) {
	n := len(st.members)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && st.less(r, l) {
			m = r
		}
		if !st.less(m, i) {
			return
		}
		st.members[i], st.members[m] = st.members[m], st.members[i]
		i = m
	}
}

// scenarioSalt hashes a scenario id so that scenarios draw different random
// numbers for the same seed.
func scenarioSalt(id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	return h.Sum64()
}

// mix combines two 64-bit values into a well-spread one (splitmix64
// finaliser).
func mix(a, b uint64) uint64 {
	z := a ^ (b + 0x9e3779b97f4a7c15 + a<<6 + a>>2)
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
