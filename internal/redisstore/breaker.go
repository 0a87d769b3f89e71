package redisstore

import (
	"sync"
	"time"
)

// BreakerState is a Breaker's state.
type BreakerState uint8

const (
	// BreakerClosed lets every call through.
	BreakerClosed BreakerState = iota
	// BreakerOpen refuses every call until the cooldown has passed.
	BreakerOpen
	// BreakerHalfOpen lets one probe call through; its outcome closes or reopens.
	BreakerHalfOpen
)

func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return "unknown"
}

// Defaults for a Breaker's zero fields.
const (
	DefaultFailures = 3
	DefaultCooldown = time.Second
)

// Breaker stops a replica from calling a Redis that keeps failing, so a
// dead Redis costs one probe per cooldown instead of a deadline per call.
// The caller asks Allow before a call and reports its outcome with Done;
// while Allow is false it uses local state only. Time is passed in.
//
// The zero value is a closed breaker with the defaults.
type Breaker struct {
	// Failures is how many calls in a row must fail to open; default 3.
	Failures int
	// Cooldown is how long it stays open before one probe; default 1 s.
	Cooldown time.Duration

	mu       sync.Mutex // guards the following fields
	state    BreakerState
	failed   int       // consecutive failures while closed
	openedAt time.Time // when it last opened
	probing  bool      // a half-open probe is out
	probeAt  time.Time // when it went out
}

// Allow reports whether a call may go to Redis at now. After the cooldown
// it lets one probe through, whose Done decides; if none comes within
// another cooldown, it lets another probe through.
func (b *Breaker) Allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.state {
	case BreakerClosed:
		return true
	case BreakerOpen:
		if now.Sub(b.openedAt) < b.cooldown() {
			return false
		}
		b.state, b.probing, b.probeAt = BreakerHalfOpen, true, now
		return true
	default: // BreakerHalfOpen
		// A probe never reported (its caller lost it) must not wedge
		// the breaker: a cooldown later, another one goes.
		if b.probing && now.Sub(b.probeAt) < b.cooldown() {
			return false
		}
		b.probing, b.probeAt = true, now
		return true
	}
}

// Done records the outcome of an allowed call at now: nil closes a
// half-open breaker and resets the count; an error counts towards opening,
// and reopens a half-open one at once.
func (b *Breaker) Done(err error, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		b.state, b.failed, b.probing = BreakerClosed, 0, false
		return
	}
	switch b.state {
	case BreakerClosed:
		b.failed++
		if b.failed >= b.failures() {
			b.openLocked(now)
		}
	case BreakerHalfOpen:
		b.openLocked(now)
	}
}

// State returns the current state, for metrics and readiness.
func (b *Breaker) State() BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.state
}

func (b *Breaker) openLocked(now time.Time) {
	b.state, b.openedAt, b.failed, b.probing = BreakerOpen, now, 0, false
}

func (b *Breaker) failures() int {
	if b.Failures > 0 {
		return b.Failures
	}
	return DefaultFailures
}

func (b *Breaker) cooldown() time.Duration {
	if b.Cooldown > 0 {
		return b.Cooldown
	}
	return DefaultCooldown
}
