package main

import (
	"bufio"
	"container/heap"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strings"
	"time"

	"github.com/flowlock/flowlock/internal/traffic"
)

// Limits that keep a trace bounded.
const (
	maxDuration    = 7 * 24 * time.Hour
	maxClients     = 100_000
	defaultMaxReqs = 2_000_000
)

// defaultStart is the default --start: a Monday morning, fixed so that a
// trace is reproducible byte for byte.
const defaultStart = "2026-01-05T09:00:00Z"

// tsLayout is RFC 3339 with exactly six fractional digits.
const tsLayout = "2006-01-02T15:04:05.000000Z07:00"

// errHelp is returned by a command whose flags asked for help; run treats it
// as success.
var errHelp = errors.New("help requested")

// traceOptions are the flags of "flowlock-sim trace".
type traceOptions struct {
	scenario    traffic.Scenario
	seed        uint64
	clients     int
	start       time.Time
	ipv6        bool
	firstAddr   netip.Addr // invalid: streamAddr's default numbering
	raw         bool
	maxRequests int
}

// parseTrace parses and validates the flags of "flowlock-sim trace".
func parseTrace(args []string, stderr io.Writer) (traceOptions, error) {
	fs := flag.NewFlagSet("trace", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("scenario", "", "scenario `name` or id (see 'flowlock-sim scenarios'); required")
	seed := fs.Uint64("seed", 1, "random `seed`; the same seed gives the same trace")
	duration := fs.Duration("duration", 0, "trace `length` (0: the scenario's horizon; at most 168h)")
	clients := fs.Int("clients", 1, "number of independent streams, each from its own address (at most 100000)")
	start := fs.String("start", defaultStart, "`time` of the trace start, RFC 3339")
	ipv6 := fs.Bool("ipv6", false, "give the streams IPv6 addresses (one /64 each) instead of 10.x.y.z")
	first := fs.String("first-addr", "", "`address` of stream 0; stream k gets first-addr + k (IPv6: + k in the /64 prefix)")
	raw := fs.Bool("raw", false, "skip the observation model (5 ms timestamp noise, 1 ms resolution)")
	maxReqs := fs.Int("max-requests", defaultMaxReqs, "fail rather than write more than `N` requests")
	if err := parse(fs, args); err != nil {
		return traceOptions{}, err
	}

	var o traceOptions
	switch s, ok := traffic.Lookup(*name); {
	case *name == "":
		return o, usagef("--scenario is required; one of: %s", scenarioNames())
	case !ok:
		return o, usagef("--scenario %q: unknown scenario; one of: %s", *name, scenarioNames())
	default:
		o.scenario = s
	}
	switch d := *duration; {
	case d < 0:
		return o, usagef("--duration %v: must not be negative", d)
	case d > maxDuration:
		return o, usagef("--duration %v: more than the maximum of %v", d, maxDuration)
	case d > 0:
		o.scenario.Horizon = d
	}
	if *clients < 1 || *clients > maxClients {
		return o, usagef("--clients %d: want 1 to %d", *clients, maxClients)
	}
	t, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		return o, usagef("--start %q: want an RFC 3339 time such as %s", *start, defaultStart)
	}
	if *maxReqs < 1 {
		return o, usagef("--max-requests %d: must be at least 1", *maxReqs)
	}
	if *first != "" {
		a, err := parseFirstAddr(*first, *clients)
		if err != nil {
			return o, err
		}
		o.firstAddr = a
	}
	o.seed, o.clients, o.start, o.ipv6, o.raw, o.maxRequests = *seed, *clients, t.UTC(), *ipv6, *raw, *maxReqs
	return o, nil
}

// scenarioNames lists "ID (name)" for every scenario, for error messages.
func scenarioNames() string {
	var b strings.Builder
	for i, s := range traffic.Scenarios() {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s (%s)", s.Name, s.ID)
	}
	return b.String()
}

// traceRecord is one line of a trace, in the DESIGN.md §3 format.
type traceRecord struct {
	TS       string       `json:"ts"`
	IP       string       `json:"ip"`
	Method   string       `json:"method"`
	Path     string       `json:"path"`
	Headers  traceHeaders `json:"headers"`
	Label    string       `json:"label"`
	Scenario string       `json:"scenario"`
}

// traceHeaders are the request headers a trace records.
type traceHeaders struct {
	UserAgent string `json:"user-agent"`
}

// runTrace implements "flowlock-sim trace".
func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseTrace(args, stderr)
	if err != nil {
		return err
	}
	var opts []traffic.Option
	if o.raw {
		opts = append(opts, traffic.Raw())
	}
	m := make(merger, 0, o.clients)
	for k := range o.clients {
		st := o.scenario.Stream(streamSeed(o.seed, k), o.start, opts...)
		if r, ok := st.Next(); ok {
			m = append(m, pending{req: r, k: k, st: st, ip: o.addr(k).String()})
		}
	}
	heap.Init(&m)

	w := bufio.NewWriterSize(stdout, 64<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	rec := traceRecord{Label: string(o.scenario.Label), Scenario: o.scenario.Name}
	for n := 0; len(m) > 0; n++ {
		if n == o.maxRequests {
			if err := w.Flush(); err != nil {
				return fmt.Errorf("write trace: %w", err)
			}
			return fmt.Errorf("trace: stopped after --max-requests %d requests; raise it or shorten --duration/--clients", n)
		}
		if n%4096 == 0 && ctx.Err() != nil {
			w.Flush()
			return ctx.Err()
		}
		p := &m[0]
		rec.TS = p.req.TS.UTC().Format(tsLayout)
		rec.IP = p.ip
		rec.Method, rec.Path, rec.Headers.UserAgent = p.req.Method, p.req.Path, p.req.UserAgent
		if err := enc.Encode(&rec); err != nil {
			return fmt.Errorf("write trace: %w", err)
		}
		if r, ok := p.st.Next(); ok {
			p.req = r
			heap.Fix(&m, 0)
		} else {
			heap.Pop(&m)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write trace: %w", err)
	}
	return nil
}

// streamSeed returns the seed of stream k: the seed itself for stream 0, a
// well-mixed derivation for the others.
func streamSeed(seed uint64, k int) uint64 {
	if k == 0 {
		return seed
	}
	z := seed + uint64(k)*0x9e3779b97f4a7c15
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

// addr returns the address of stream k.
func (o traceOptions) addr(k int) netip.Addr {
	if o.firstAddr.IsValid() {
		return addrPlus(o.firstAddr, k)
	}
	return streamAddr(k, o.ipv6)
}

// parseFirstAddr reads --first-addr and checks that n streams fit after it.
func parseFirstAddr(s string, n int) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, usagef("--first-addr %q: want an IP address such as 10.1.0.1", s)
	}
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		if uint64(binary.BigEndian.Uint32(b[:]))+uint64(n-1) > math.MaxUint32 {
			return netip.Addr{}, usagef("--first-addr %s: %d streams do not fit after it", s, n)
		}
	}
	return a, nil
}

// addrPlus returns a + k: for IPv4 the next addresses, for IPv6 the same
// interface id in the next /64 prefixes, so that every stream stays its own
// identity under Flow Lock's default IPv6 grouping.
func addrPlus(a netip.Addr, k int) netip.Addr {
	if a.Is4() {
		b := a.As4()
		binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32(b[:])+uint32(k))
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	binary.BigEndian.PutUint64(b[:8], binary.BigEndian.Uint64(b[:8])+uint64(k))
	return netip.AddrFrom16(b)
}

// streamAddr returns the address of stream k: 10.0.0.0 + k + 1, or
// 2001:db8:H:L::1 with H:L = k + 1, one /64 per stream.
func streamAddr(k int, ipv6 bool) netip.Addr {
	n := uint32(k + 1)
	if !ipv6 {
		return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
	}
	a := [16]byte{0x20, 0x01, 0x0d, 0xb8, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n), 15: 1}
	return netip.AddrFrom16(a)
}

// pending is the next request of one stream of a trace.
type pending struct {
	req traffic.Request
	k   int
	st  *traffic.Stream
	ip  string
}

// merger is a min-heap of streams ordered by their next request's time,
// ties by stream index, for container/heap.
type merger []pending

func (m merger) Len() int { return len(m) }
func (m merger) Less(i, j int) bool {
	if !m[i].req.TS.Equal(m[j].req.TS) {
		return m[i].req.TS.Before(m[j].req.TS)
	}
	return m[i].k < m[j].k
}
func (m merger) Swap(i, j int) { m[i], m[j] = m[j], m[i] }
func (m *merger) Push(x any)   { *m = append(*m, x.(pending)) }
func (m *merger) Pop() any {
	old := *m
	x := old[len(old)-1]
	*m = old[:len(old)-1]
	return x
}

// hopAddr returns the address of a stream's client after hop moves
// (traffic.Scenario.RotateEvery): the stream's own address for hop 0, then
// one /16 (IPv4) or /64 (IPv6) further per hop, within the stream's own
// stack, so every hop is an identity of its own.
func hopAddr(a netip.Addr, hop int) netip.Addr {
	if hop == 0 {
		return a
	}
	if a.Is4() {
		return addrPlus(a, hop<<16)
	}
	return addrPlus(a, hop)
}
