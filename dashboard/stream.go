package dashboard

import (
	"errors"
	"net/http"
	"sync"
	"time"
)

const (
	defaultMaxStreams   = 64               // concurrent streams when Options.MaxStreams is 0
	defaultAdminStreams = 16               // admin-token streams when Options.AdminStreams is 0
	streamWriteWait     = 10 * time.Second // longest one event may take to reach a client
	retryMillis         = "2000"           // how soon EventSource reconnects after the stream ends
)

// streamInterval is the time between snapshots, and heartbeatEvery the
// time between comment lines that keep idle proxies from closing a stream
// (a snapshot that fails to build leaves the stream otherwise silent).
// Tests shorten them.
var (
	streamInterval = time.Second
	heartbeatEvery = 15 * time.Second
)

var (
	errStreamsFull = errors.New("too many dashboard streams")
	errHubClosed   = errors.New("shutting down")
)

// hub computes one snapshot per tick and hands the same encoded event to
// every subscribed stream, however many there are.
//
// Its ticker goroutine runs only while someone is subscribed: the first
// subscriber starts it and it returns at the first tick without
// subscribers, so an idle dashboard costs nothing and New starts no
// goroutine. At server shutdown (see watch) the hub closes done, every
// stream returns, and new subscriptions are refused.
type hub struct {
	build    func(clients int) []byte // encodes one event; called by the ticker goroutine only
	max      int                      // most concurrent subscribers without the admin token
	maxAdmin int                      // most concurrent subscribers with it, beyond max
	interval time.Duration            // time between events
	done     chan struct{}            // closed at server shutdown

	mu      sync.Mutex            // guards the following fields
	subs    map[chan []byte]bool  // one buffered channel (size 1) per stream: true for an admin's
	admins  int                   // subscribers with the admin token
	running bool                  // the ticker goroutine is running
	latest  []byte                // the last event, for a new subscriber; nil when stale
	closed  bool                  // done is closed
	servers map[*http.Server]bool // servers whose shutdown closes the hub
}

func newHub(build func(clients int) []byte, maxSubs int, interval time.Duration) *hub {
	return &hub{
		build:    build,
		max:      maxSubs,
		interval: interval,
		done:     make(chan struct{}),
		subs:     make(map[chan []byte]bool),
		servers:  make(map[*http.Server]bool),
	}
}

// subscribe adds a stream; admin says that its client presented the admin
// token, which gives it a place among maxAdmin of its own. Its channel
// receives the latest event at once if there is a fresh one, then every
// new event; a slow stream skips events rather than holding the others up.
func (h *hub) subscribe(admin bool) (chan []byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.closed:
		return nil, errHubClosed
	case admin && h.admins >= h.maxAdmin:
		return nil, errStreamsFull
	case !admin && len(h.subs)-h.admins >= h.max:
		return nil, errStreamsFull
	}
	ch := make(chan []byte, 1)
	h.subs[ch] = admin
	if admin {
		h.admins++
	}
	if h.latest != nil {
		ch <- h.latest
	}
	if !h.running {
		h.running = true
		go h.run()
	}
	return ch, nil
}

// unsubscribe removes a stream added by subscribe.
func (h *hub) unsubscribe(ch chan []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if admin, ok := h.subs[ch]; ok && admin {
		h.admins--
	}
	delete(h.subs, ch)
}

// run builds and broadcasts an event every interval until nobody is
// subscribed or the hub is closed.
func (h *hub) run() {
	t := time.NewTicker(h.interval)
	defer t.Stop()
	for {
		h.mu.Lock()
		n := len(h.subs)
		if n == 0 || h.closed {
			h.running, h.latest = false, nil
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()

		msg := h.build(n)

		h.mu.Lock()
		h.latest = msg
		for ch := range h.subs {
			select {
			case ch <- msg:
			default: // the stream has not taken the last event yet: replace it
				select {
				case <-ch:
				default:
				}
				ch <- msg // only this goroutine sends, and the buffer is now empty
			}
		}
		h.mu.Unlock()

		select {
		case <-t.C:
		case <-h.done:
		}
	}
}

// watch makes the shutdown of srv close the hub, once per server: an
// event stream is never idle, so http.Server.Shutdown would otherwise wait
// for its whole timeout and then leave the streams running.
func (h *hub) watch(srv *http.Server) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.servers[srv] {
		return
	}
	h.servers[srv] = true
	srv.RegisterOnShutdown(h.close)
}

// close ends every stream and refuses new ones.
func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.done)
	}
}

// handleStream serves GET /api/v1/stream: server-sent events, one
// "snapshot" event per second whose data is the snapshot as one line of
// JSON, and a comment line as a heartbeat. The stream ends when the client
// goes away or the server shuts down; EventSource then reconnects by
// itself after the advertised retry delay.
func (s *server) handleStream(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead { // the headers only: a body would never end
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		return
	}
	if srv, ok := r.Context().Value(http.ServerContextKey).(*http.Server); ok {
		s.hub.watch(srv)
	}
	ch, err := s.hub.subscribe(s.adminOn && s.authorized(r))
	if err != nil {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	defer s.hub.unsubscribe(ch)

	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{}) //nolint:errcheck // not every writer has deadlines
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteWait))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events through at once
	w.WriteHeader(http.StatusOK)
	if !write([]byte("retry: " + retryMillis + "\n\n")) {
		return
	}
	heartbeat := time.NewTicker(heartbeatEvery)
	defer heartbeat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.hub.done:
			return
		case msg := <-ch:
			if !write(msg) {
				return
			}
		case <-heartbeat.C:
			if !write([]byte(": heartbeat\n\n")) {
				return
			}
		}
	}
}
