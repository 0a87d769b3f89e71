package listen

import (
	"errors"
	"io"
	"math"
	"net"
	"net/netip"
	"testing"
	"time"
)

// server accepts from l until it is closed, reads every connection until
// it ends (so that bytes are counted) and hands each accepted connection to
// the test.
func server(t *testing.T, l net.Listener) <-chan net.Conn {
	t.Helper()
	accepted := make(chan net.Conn, 100)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
			go func() {
				_, _ = io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	return accepted
}

// listenLimited returns a loopback Listener with opts.
func listenLimited(t *testing.T, opts Options) *Listener {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return Limit(inner, opts)
}

// dial connects from the loopback address from (e.g. "127.0.0.2"; "" lets
// the kernel choose) and closes the connection when t ends.
func dial(t *testing.T, l net.Listener, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByServer reports whether the server closed c within d.
func closedByServer(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

// waitAccepted receives n connections from accepted.
func waitAccepted(t *testing.T, accepted <-chan net.Conn, n int) []net.Conn {
	t.Helper()
	var out []net.Conn
	for range n {
		select {
		case c := <-accepted:
			out = append(out, c)
		case <-time.After(5 * time.Second):
			t.Fatalf("accepted %d connections, want %d", len(out), n)
		}
	}
	return out
}

// preface is what an HTTP/2 client sends first.
const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func TestCapClosesOldestSilentConnection(t *testing.T) {
	l := listenLimited(t, Options{MaxConns: 3})
	accepted := server(t, l)
	a, b, c := dial(t, l, ""), dial(t, l, ""), dial(t, l, "")
	waitAccepted(t, accepted, 3)
	d := dial(t, l, "")
	waitAccepted(t, accepted, 1)

	if !closedByServer(a, 2*time.Second) {
		t.Error("the oldest silent connection is still open after a new one arrived at the cap")
	}
	for name, c := range map[string]net.Conn{"second": b, "third": c, "new": d} {
		if closedByServer(c, 100*time.Millisecond) {
			t.Errorf("the %s connection was closed; only the oldest silent one should be", name)
		}
	}
	if s := l.Stats(); s.Open != 3 || s.Evicted != 1 || s.Refused != 0 {
		t.Errorf("stats = %+v, want 3 open, 1 evicted, 0 refused", s)
	}
}

func TestCapKeepsEstablishedConnections(t *testing.T) {
	l := listenLimited(t, Options{MaxConns: 2})
	accepted := server(t, l)
	a := dial(t, l, "")
	b := dial(t, l, "")
	waitAccepted(t, accepted, 2)
	silent := dial(t, l, "") // third at a cap of 2: a, the oldest silent one, makes room
	waitAccepted(t, accepted, 1)
	// b and silent are open. Now b speaks and is established.
	if !closedByServer(a, 2*time.Second) {
		t.Fatal("the oldest silent connection was not closed")
	}
	if _, err := io.WriteString(b, preface); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return l.Stats().Open == 2 && l.pendingLen() == 1 })

	// A newcomer evicts the silent one, never b.
	c := dial(t, l, "")
	waitAccepted(t, accepted, 1)
	if !closedByServer(silent, 2*time.Second) {
		t.Error("the silent connection was not closed to make room")
	}
	if closedByServer(b, 100*time.Millisecond) {
		t.Error("an established connection was closed to make room")
	}
	// With every open connection established and none idle for
	// IdleEvictAfter, a newcomer is refused.
	if _, err := io.WriteString(c, preface); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return l.pendingLen() == 0 })
	refused := dial(t, l, "")
	if !closedByServer(refused, 2*time.Second) {
		t.Error("a connection over the cap was kept although every open one is established")
	}
	for name, c := range map[string]net.Conn{"b": b, "c": c} {
		if closedByServer(c, 100*time.Millisecond) {
			t.Errorf("established connection %s was closed", name)
		}
	}
	if s := l.Stats(); s.Refused != 1 || s.Evicted != 2 {
		t.Errorf("stats = %+v, want 2 evicted and 1 refused", s)
	}
}

// establishAll sends the preface on each of cs and waits until the
// listener counts none of its open connections as pending.
func establishAll(t *testing.T, l *Listener, cs ...net.Conn) {
	t.Helper()
	for _, c := range cs {
		if _, err := io.WriteString(c, preface); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return l.pendingLen() == 0 })
}

// TestCapEvictsIdlestEstablishedConnection: at the cap, with no connection
// left that is still in its handshake, the established connection that has
// read nothing for longest makes room, once it has been idle for
// IdleEvictAfter. Connections that sent their preface and then went quiet
// (HTTP keep-alive after one request, gRPC after the preface and SETTINGS)
// would otherwise hold the cap, and health probes would be refused.
func TestCapEvictsIdlestEstablishedConnection(t *testing.T) {
	l := listenLimited(t, Options{MaxConns: 3})
	accepted := server(t, l)
	a, b, c := dial(t, l, ""), dial(t, l, ""), dial(t, l, "")
	waitAccepted(t, accepted, 3)
	establishAll(t, l, a, b, c)

	time.Sleep(IdleEvictAfter + 200*time.Millisecond)
	// c and then a speak again; b, established second, is now the idlest.
	for _, cn := range []net.Conn{c, a} {
		if _, err := io.WriteString(cn, "more"); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return l.lastReadAge(a) < IdleEvictAfter && l.lastReadAge(c) < IdleEvictAfter })

	d := dial(t, l, "")
	waitAccepted(t, accepted, 1)
	if !closedByServer(b, 2*time.Second) {
		t.Fatal("the idlest established connection is still open after a new one arrived at the full cap")
	}
	for name, cn := range map[string]net.Conn{"a": a, "c": c, "new": d} {
		if closedByServer(cn, 100*time.Millisecond) {
			t.Errorf("connection %s was closed; only the idlest should be", name)
		}
	}
	if s := l.Stats(); s.Open != 3 || s.Evicted != 1 || s.EvictedIdle != 1 || s.Refused != 0 {
		t.Errorf("stats = %+v, want 3 open, 1 evicted (idle), 0 refused", s)
	}
}

// TestCapKeepsBusyEstablishedConnections: connections that keep reading,
// as Envoy's gRPC connections do, are never evicted; a newcomer is refused
// instead.
func TestCapKeepsBusyEstablishedConnections(t *testing.T) {
	l := listenLimited(t, Options{MaxConns: 2})
	accepted := server(t, l)
	a, b := dial(t, l, ""), dial(t, l, "")
	waitAccepted(t, accepted, 2)
	establishAll(t, l, a, b)

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // a and b send a frame every 50ms, like a busy client
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, _ = io.WriteString(a, "frame")
				_, _ = io.WriteString(b, "frame")
			}
		}
	}()
	defer func() { close(stop); <-done }()

	time.Sleep(IdleEvictAfter + 300*time.Millisecond)
	for range 3 {
		if c := dial(t, l, ""); !closedByServer(c, 2*time.Second) {
			t.Error("a connection over the cap was kept although every open one is busy")
		}
	}
	for name, cn := range map[string]net.Conn{"a": a, "b": b} {
		if closedByServer(cn, 100*time.Millisecond) {
			t.Errorf("busy connection %s was closed to make room", name)
		}
	}
	if s := l.Stats(); s.Evicted != 0 || s.Refused != 3 {
		t.Errorf("stats = %+v, want 0 evicted and 3 refused", s)
	}
}

func TestClosedConnectionsFreeTheirSlot(t *testing.T) {
	l := listenLimited(t, Options{MaxConns: 1})
	accepted := server(t, l)
	for i := range 5 {
		c := dial(t, l, "")
		if _, err := io.WriteString(c, preface); err != nil {
			t.Fatal(err)
		}
		waitAccepted(t, accepted, 1)
		c.Close()
		waitFor(t, func() bool { return l.Stats().Open == 0 })
		if s := l.Stats(); s.Refused != 0 || s.Evicted != 0 {
			t.Fatalf("round %d: stats = %+v, want nothing refused or evicted", i, s)
		}
	}
}

func TestAllowClosesOtherPeersAtAccept(t *testing.T) {
	l := listenLimited(t, Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}})
	accepted := server(t, l)
	other := dial(t, l, "127.0.0.3")
	if !closedByServer(other, 2*time.Second) {
		t.Error("a peer outside --allow-peers was not closed")
	}
	ok := dial(t, l, "127.0.0.2")
	waitAccepted(t, accepted, 1)
	if closedByServer(ok, 100*time.Millisecond) {
		t.Error("an allowed peer was closed")
	}
	if s := l.Stats(); s.Denied != 1 || s.Open != 1 {
		t.Errorf("stats = %+v, want 1 denied and 1 open", s)
	}
}

// pendingLen returns the number of connections not yet established.
func (l *Listener) pendingLen() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for c := l.pending.front(); c != nil; c = c.next {
		n++
	}
	return n
}

// lastReadAge returns how long ago the accepted connection whose peer is
// the local end of c last read data, or a very long time if there is none.
func (l *Listener) lastReadAge(c net.Conn) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, list := range []*connList{&l.pending, &l.established} {
		for sc := list.front(); sc != nil; sc = sc.next {
			if sc.RemoteAddr().String() == c.LocalAddr().String() {
				return time.Duration(l.now() - sc.lastRead.Load())
			}
		}
	}
	return time.Duration(math.MaxInt64)
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met within 5s")
}

// endless is a net.Conn whose Read fills b at once: the cost measured is
// the wrapper's.
type endless struct{ net.Conn }

func (endless) Read(b []byte) (int, error) { return len(b), nil }

// BenchmarkEstablishedRead is the cost conn.Read adds to every Read of an
// established connection: a clock read and an atomic store, and the lock
// at most once per activityGrain.
func BenchmarkEstablishedRead(b *testing.B) {
	l := Limit(nil, Options{MaxConns: 1})
	c := &conn{Conn: endless{}, l: l}
	if !l.admit(c) {
		b.Fatal("not admitted")
	}
	c.establish()
	buf := make([]byte, 512)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = c.Read(buf)
	}
}
