// Package listen hardens the service's TCP listeners against peers that
// open connections and then do nothing useful with them: a cap on open
// connections that keeps room for real clients by closing the oldest
// connection that never got past its handshake, or else the one that has
// been idle longest, an allow-list of peer networks checked at accept, and
// TLS (optionally mutual) whose files are reloaded when they change,
// without a restart.
//
// It knows nothing of gRPC or HTTP beyond one fact: a real client of
// either sends at least PrefaceBytes as soon as it connects.
package listen

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// PrefaceBytes is how many bytes a plaintext connection must send before it
// counts as established. The HTTP/2 client preface (RFC 9113 §3.4), which
// every gRPC client sends first, is exactly 24 bytes; every HTTP/1 request
// line plus its Host header is longer.
const PrefaceBytes = 24

// capWarnEvery is how often, at most, Listener logs that its cap was hit.
const capWarnEvery = time.Minute

// IdleEvictAfter is how long an established connection must have read
// nothing before the cap may close it to make room. A handshake proves only
// that a peer can speak the protocol, not that it will: a flood of
// connections that send one request (or the HTTP/2 preface and SETTINGS)
// and then sit idle would otherwise hold every slot for the servers' idle
// timeouts (minutes), and health probes would be refused. A second is far
// longer than the gap between frames of a busy client (Envoy's connection
// carries Checks and its pings), and long enough that a client whose
// request was just read, and which is waiting for the answer, keeps its
// connection.
const IdleEvictAfter = time.Second

// activityGrain is how stale the order of the established list may be: a
// Read moves its connection to the back of the list at most this often, so
// a busy connection takes the listener's lock about ten times a second, not
// once per Read. The idlest connection is therefore found to within this.
const activityGrain = 100 * time.Millisecond

// Options configure a Listener.
type Options struct {
	// Name names the listener in logs, e.g. "grpc".
	Name string

	// MaxConns caps the connections open at once. When a new connection
	// arrives at the cap, the oldest connection that is not yet
	// established is closed to make room; when every open connection is
	// established, the one that has read nothing for longest is closed if
	// that is at least IdleEvictAfter, and the new one otherwise. 0 means
	// no cap.
	MaxConns int

	// Allow lists the peer networks accepted; a connection from any other
	// address is closed at accept, before a byte is read. Empty accepts
	// every peer.
	Allow []netip.Prefix

	// TLS says that connections speak TLS. Such a connection is
	// established when its handshake completes (Certs marks it), not when
	// it has sent PrefaceBytes, since a ClientHello says nothing about
	// whether the peer will finish.
	TLS bool

	// Logger receives a rate-limited warning when the cap is hit. nil
	// discards.
	Logger *slog.Logger
}

// Stats are a Listener's counters.
type Stats struct {
	// Open is the number of connections open now.
	Open int
	// Evicted counts connections closed to make room for a new one,
	// EvictedIdle among them.
	Evicted uint64
	// EvictedIdle counts the established connections evicted because
	// they had read nothing for at least IdleEvictAfter.
	EvictedIdle uint64
	// Refused counts new connections closed because the cap was reached,
	// every open connection was established and none had been idle for
	// IdleEvictAfter.
	Refused uint64
	// Denied counts connections closed because the peer is not in Allow.
	Denied uint64
}

// Listener is a net.Listener with a connection cap that keeps room for
// real clients, and a peer allow-list. Create it with Limit.
type Listener struct {
	net.Listener
	max   int
	allow []netip.Prefix
	tls   bool
	name  string
	log   *slog.Logger
	epoch time.Time // the zero of the connections' read clocks (monotonic)

	evicted, evictedIdle, refused, denied atomic.Uint64

	mu          sync.Mutex // guards the following fields
	open        int
	pending     connList // open connections not yet established, oldest first
	established connList // established connections, the one read least recently first (to within activityGrain)
	lastWarn    time.Time
	lastDenied  time.Time
}

// Limit wraps inner with the cap and allow-list of opts.
func Limit(inner net.Listener, opts Options) *Listener {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{
		Listener: inner,
		max:      opts.MaxConns,
		allow:    opts.Allow,
		tls:      opts.TLS,
		name:     opts.Name,
		log:      log,
		epoch:    time.Now(),
	}
}

// now returns the time since l was made, for the connections' read clocks.
func (l *Listener) now() int64 { return int64(time.Since(l.epoch)) }

// Accept returns the next connection from an allowed peer that fits under
// the cap. Connections that do not are closed here and never returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.allowed(c.RemoteAddr()) {
			l.denied.Add(1)
			l.warnDenied(c.RemoteAddr())
			c.Close()
			continue
		}
		tc := &conn{Conn: c, l: l}
		tc.lastRead.Store(l.now()) // a new connection is not idle yet
		if !l.admit(tc) {
			l.refused.Add(1)
			c.Close()
			continue
		}
		return tc, nil
	}
}

// allowed reports whether a peer at addr may connect.
func (l *Listener) allowed(addr net.Addr) bool {
	if len(l.allow) == 0 {
		return true
	}
	ta, ok := addr.(*net.TCPAddr)
	if !ok {
		return false // not an address the list can speak about: refuse
	}
	ip := ta.AddrPort().Addr().Unmap()
	for _, p := range l.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// admit counts c as open. At the cap it first closes the oldest pending
// connection or, when there is none, the established connection idle
// longest if it has been idle for IdleEvictAfter. It reports false when
// the cap is reached and no connection can make room.
func (l *Listener) admit(c *conn) bool {
	for {
		l.mu.Lock()
		if l.max <= 0 || l.open < l.max {
			l.open++
			l.pending.pushBack(c)
			l.mu.Unlock()
			return true
		}
		victim, idle := l.pending.front(), false
		if victim == nil {
			victim = l.idlestLocked()
			idle = victim != nil
		}
		l.warnLocked()
		l.mu.Unlock()
		if victim == nil {
			return false
		}
		l.evicted.Add(1)
		if idle {
			l.evictedIdle.Add(1)
		}
		_ = victim.Close() // releases its slot and leaves its list
	}
}

// idlestLocked returns the established connection that has read nothing
// for longest, if that is at least IdleEvictAfter, or nil.
func (l *Listener) idlestLocked() *conn {
	c := l.established.front()
	if c == nil || l.now()-c.lastRead.Load() < int64(IdleEvictAfter) {
		return nil
	}
	return c
}

// warnLocked logs, at most once per capWarnEvery, that the cap was hit.
func (l *Listener) warnLocked() {
	now := time.Now()
	if now.Sub(l.lastWarn) < capWarnEvery {
		return
	}
	l.lastWarn = now
	l.log.Warn("connection cap reached: closing connections that have not completed a handshake, or else the one idle longest",
		"listener", l.name, "max_conns", l.max, "idle_after", IdleEvictAfter.String(),
		"evicted", l.evicted.Load(), "evicted_idle", l.evictedIdle.Load(), "refused", l.refused.Load())
}

// warnDenied logs, at most once per capWarnEvery, that a peer outside
// Allow was refused: a probe or proxy left off the list shows up here
// rather than as a mystery timeout.
func (l *Listener) warnDenied(peer net.Addr) {
	l.mu.Lock()
	now := time.Now()
	if now.Sub(l.lastDenied) < capWarnEvery {
		l.mu.Unlock()
		return
	}
	l.lastDenied = now
	l.mu.Unlock()
	l.log.Warn("connection from a peer outside the allow-list closed", "listener", l.name,
		"peer", peer.String(), "denied", l.denied.Load())
}

// Name returns the listener's name (Options.Name).
func (l *Listener) Name() string { return l.name }

// Stats returns the listener's counters.
func (l *Listener) Stats() Stats {
	l.mu.Lock()
	open := l.open
	l.mu.Unlock()
	return Stats{Open: open, Evicted: l.evicted.Load(), EvictedIdle: l.evictedIdle.Load(),
		Refused: l.refused.Load(), Denied: l.denied.Load()}
}

// MarkEstablished records that c completed its handshake, so that the cap
// closes it to make room only once it has been idle for IdleEvictAfter. It
// does nothing for a connection that did not come from a Listener.
func MarkEstablished(c net.Conn) {
	if tc, ok := c.(*conn); ok {
		tc.establish()
	}
}

// conn is a connection accepted by a Listener.
type conn struct {
	net.Conn
	l *Listener

	established atomic.Bool
	closed      atomic.Bool
	seen        atomic.Int64 // bytes read while not established (plaintext)
	lastRead    atomic.Int64 // l.now() when a Read last returned data (or at accept)
	listedAt    atomic.Int64 // lastRead when c was last put at the back of l.established; written under l.mu

	// prev, next and list link c into the listener's pending or
	// established list; guarded by l.mu.
	prev, next *conn
	list       *connList
}

// Read notes the time of every Read that returns data, and counts the
// bytes of a plaintext connection until it is established.
func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		now := c.l.now()
		c.lastRead.Store(now)
		if !c.established.Load() {
			if !c.l.tls && c.seen.Add(int64(n)) >= PrefaceBytes {
				c.establish()
			}
		} else if now-c.listedAt.Load() >= int64(activityGrain) {
			c.touch(now)
		}
	}
	return n, err
}

// establish moves c from the pending list to the back of the established
// one: it is no longer closed to make room unless it falls idle.
func (c *conn) establish() {
	if c.established.Swap(true) {
		return
	}
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.list != &c.l.pending {
		return // closed (or being closed): it must not enter a list again
	}
	c.l.pending.remove(c)
	c.listedAt.Store(c.lastRead.Load())
	c.l.established.pushBack(c)
}

// touch moves established c to the back of the established list: it read
// at now.
func (c *conn) touch(now int64) {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.list == &c.l.established {
		c.l.established.remove(c)
		c.listedAt.Store(now)
		c.l.established.pushBack(c)
	}
}

// Close closes the connection and releases its slot, once.
func (c *conn) Close() error {
	if c.closed.Swap(true) {
		return c.Conn.Close() // the server closing what the cap evicted: the socket says it is closed
	}
	c.l.mu.Lock()
	c.l.open--
	if c.list != nil {
		c.list.remove(c)
	}
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// NetConn returns the underlying connection, like tls.Conn.NetConn.
func (c *conn) NetConn() net.Conn { return c.Conn }

// connList is an intrusive doubly linked list of connections, so that
// adding, removing and finding the oldest cost O(1) without allocating.
type connList struct {
	head, tail *conn
}

// pushBack appends c, which must be in no list.
func (q *connList) pushBack(c *conn) {
	if c.list != nil {
		return
	}
	c.prev, c.next, c.list = q.tail, nil, q
	if q.tail != nil {
		q.tail.next = c
	} else {
		q.head = c
	}
	q.tail = c
}

// remove takes c out of q, if it is there.
func (q *connList) remove(c *conn) {
	if c.list != q {
		return
	}
	if c.prev != nil {
		c.prev.next = c.next
	} else {
		q.head = c.next
	}
	if c.next != nil {
		c.next.prev = c.prev
	} else {
		q.tail = c.prev
	}
	c.prev, c.next, c.list = nil, nil, nil
}

func (q *connList) front() *conn { return q.head }
