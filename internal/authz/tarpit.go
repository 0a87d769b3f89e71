package authz

import (
	"context"
	"sync/atomic"
	"time"
)

// A hold ends before the caller's deadline by a fifth of the time left, and
// at least tarpitMargin: Envoy sends its ext_authz timeout as the Check's
// deadline, and an answer that misses it fails open, which would let the
// quarantined bot through. The answer still has to be marshalled, sent and
// read, on a machine that may be loaded.
const tarpitMargin = 20 * time.Millisecond

// ForwardAuthHoldLimit is the deadline a forward-auth check's hold is
// measured against, since an HTTP check carries none: the forward-auth
// proxies in deploy/ give up after 1 s (nginx's proxy_read_timeout, the
// HAProxy Lua client's timeout) and fail open, which would let exactly the
// tarpitted clients through. With holdFor's margin a hold ends by 800 ms;
// config.Validate refuses a longer --tarpit-delay with forward-auth.
const ForwardAuthHoldLimit = time.Second

// holdFor is how long to hold with the tarpit's delay and the time left
// before the caller's deadline (ok false: none).
func holdFor(delay, left time.Duration, ok bool) time.Duration {
	if !ok {
		return delay
	}
	return min(delay, left-max(tarpitMargin, left/5))
}

// Tarpit holds the deny answers of quarantined clients for a while
// (--quarantine-action tarpit), so that a bot that waits for each answer
// before its next request is slowed down. A hold costs a goroutine that
// waits and a timer, so at most Max checks are held at once; past that the
// deny is answered at once, and the tarpit can never exhaust the service.
// A nil *Tarpit holds nothing. It is safe for concurrent use.
type Tarpit struct {
	delay time.Duration
	slots chan struct{} // one token per check being held

	held, overCap atomic.Uint64
}

// NewTarpit returns a tarpit that holds each answer for delay, at most max
// at once. delay must stay below the proxy's timeout for the check (Envoy's
// ext_authz timeout, nginx's proxy_read_timeout): a check that times out
// fails open. config.Validate bounds it; a Check's own deadline bounds it
// too (see Hold). A delay or max of 0 (or less) gives a nil Tarpit.
func NewTarpit(delay time.Duration, max int) *Tarpit {
	if delay <= 0 || max <= 0 {
		return nil
	}
	return &Tarpit{delay: delay, slots: make(chan struct{}, max)}
}

// Hold waits for the tarpit's delay, less when ctx has a deadline sooner
// (the hold then ends well before it, see holdFor), and returns early when
// ctx is done. It reports whether it held: false when all slots were taken
// (the caller answers at once) or no time was left.
func (t *Tarpit) Hold(ctx context.Context) bool {
	if t == nil {
		return false
	}
	dl, ok := ctx.Deadline()
	wait := holdFor(t.delay, time.Until(dl), ok)
	if wait <= 0 {
		return false
	}
	select {
	case t.slots <- struct{}{}:
	default:
		t.overCap.Add(1)
		return false
	}
	defer func() { <-t.slots }()
	t.held.Add(1)
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
	case <-ctx.Done():
	}
	return true
}

// Stats returns how many answers were held, and how many were answered at
// once because the tarpit was full, since the start. Zero for nil.
func (t *Tarpit) Stats() (held, overCap uint64) {
	if t == nil {
		return 0, 0
	}
	return t.held.Load(), t.overCap.Load()
}
