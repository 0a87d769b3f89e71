// Package listen hardens the service's TCP listeners against peers that
// open connections and then do nothing useful with them: a cap on open
// connections that keeps room for real clients by closing the oldest
// connection that never got past its handshake, an allow-list of peer
// networks checked at accept, and TLS (optionally mutual) whose files are
// reloaded when they change, without a restart.
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

// Options configure a Listener.
type Options struct {
	// Name names the listener in logs, e.g. "grpc".
	Name string

	// MaxConns caps the connections open at once. When a new connection
	// arrives at the cap, the oldest connection that is not yet
	// established is closed to make room; when every open connection is
	// established, the new one is closed instead. 0 means no cap.
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
	// Evicted counts connections closed to make room for a new one.
	Evicted uint64
	// Refused counts new connections closed because the cap was reached
	// and every open connection was established.
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

	evicted, refused, denied atomic.Uint64

	mu         sync.Mutex // guards the following fields
	open       int
	pending    connList // open connections not yet established, oldest first
	lastWarn   time.Time
	lastDenied time.Time
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
	}
}

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

// admit counts c as open, first closing the oldest pending connections
// while the listener is at its cap. It reports false when the cap is
// reached and no connection can make room.
func (l *Listener) admit(c *conn) bool {
	for {
		l.mu.Lock()
		if l.max <= 0 || l.open < l.max {
			l.open++
			l.pending.pushBack(c)
			l.mu.Unlock()
			return true
		}
		victim := l.pending.front()
		l.warnLocked()
		l.mu.Unlock()
		if victim == nil {
			return false
		}
		l.evicted.Add(1)
		_ = victim.Close() // releases its slot and leaves the pending list
	}
}

// warnLocked logs, at most once per capWarnEvery, that the cap was hit.
func (l *Listener) warnLocked() {
	now := time.Now()
	if now.Sub(l.lastWarn) < capWarnEvery {
		return
	}
	l.lastWarn = now
	l.log.Warn("connection cap reached: closing connections that have not completed a handshake",
		"listener", l.name, "max_conns", l.max, "evicted", l.evicted.Load(), "refused", l.refused.Load())
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
	return Stats{Open: open, Evicted: l.evicted.Load(), Refused: l.refused.Load(), Denied: l.denied.Load()}
}

// MarkEstablished records that c completed its handshake, so that the cap
// never closes it to make room. It does nothing for a connection that did
// not come from a Listener.
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

	// prev and next link the listener's pending list; guarded by l.mu.
	prev, next *conn
	inList     bool
}

// Read counts the bytes of a plaintext connection until it is established.
func (c *conn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.l.tls && !c.established.Load() && c.seen.Add(int64(n)) >= PrefaceBytes {
		c.establish()
	}
	return n, err
}

// establish takes c off the pending list: it is no longer closed to make
// room.
func (c *conn) establish() {
	if c.established.Swap(true) {
		return
	}
	c.l.mu.Lock()
	c.l.pending.remove(c)
	c.l.mu.Unlock()
}

// Close closes the connection and releases its slot, once.
func (c *conn) Close() error {
	if c.closed.Swap(true) {
		return c.Conn.Close() // the server closing what the cap evicted: the socket says it is closed
	}
	c.l.mu.Lock()
	c.l.open--
	c.l.pending.remove(c)
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

func (q *connList) pushBack(c *conn) {
	if c.inList {
		return
	}
	c.prev, c.next, c.inList = q.tail, nil, true
	if q.tail != nil {
		q.tail.next = c
	} else {
		q.head = c
	}
	q.tail = c
}

func (q *connList) remove(c *conn) {
	if !c.inList {
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
	c.prev, c.next, c.inList = nil, nil, false
}

func (q *connList) front() *conn { return q.head }
