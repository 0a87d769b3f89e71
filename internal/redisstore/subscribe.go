package redisstore

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"
)

// subscribeQueue bounds the events waiting for the caller's fn. When it is
// full, events are dropped and fn gets an OpResync instead: the caller
// reads the whole list rather than Redis's output buffer growing.
const subscribeQueue = 4096

// Reconnect backoff of Subscribe.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// item is what the pub/sub connection hands the Subscribe loop.
type item struct {
	resync bool
	msg    string
}

// Subscribe delivers every change to the shared quarantine list to fn, on
// the calling goroutine, until ctx is done (it then returns ctx.Err()).
//
// fn gets an OpResync first, once subscribed, and again after every
// reconnect or overflow: changes may have been missed, and the caller
// reads the list with All. Between reconnects it backs off from 50 ms up
// to 2 s. An event this build cannot read is treated as OpResync too.
func (s *Store) Subscribe(ctx context.Context, fn func(Change)) error {
	backoff := minBackoff
	for {
		if s.subscribeOnce(ctx, fn) {
			backoff = minBackoff // it worked for a while: retry soon
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)
	}
}

// subscribeOnce holds one subscription until it breaks or ctx is done. It
// reports whether the subscription was established.
func (s *Store) subscribeOnce(ctx context.Context, fn func(Change)) bool {
	dc, release := s.c.Dedicate()
	defer release()
	q := make(chan item, subscribeQueue)
	var overflow atomic.Bool
	push := func(it item) {
		select {
		case q <- it:
		default:
			overflow.Store(true)
		}
	}
	closed := dc.SetPubSubHooks(rueidis.PubSubHooks{
		OnMessage: func(m rueidis.PubSubMessage) { push(item{msg: m.Message}) },
		OnSubscription: func(sub rueidis.PubSubSubscription) {
			if sub.Kind == "subscribe" {
				push(item{resync: true})
			}
		},
	})
	if err := dc.Do(ctx, dc.B().Subscribe().Channel(s.keys.events).Build()).Error(); err != nil {
		return false
	}
	deliver := func(it item) {
		if overflow.Swap(false) {
			fn(Change{Op: OpResync})
		}
		if it.resync {
			fn(Change{Op: OpResync})
			return
		}
		c, err := parseChange(it.msg)
		if err != nil {
			c = Change{Op: OpResync}
		}
		fn(c)
	}
	for {
		select {
		case <-ctx.Done():
			return true
		case it := <-q:
			deliver(it)
		case err := <-closed:
			_ = err // the connection broke (or the client closed): deliver what came, then reconnect
			for {
				select {
				case it := <-q:
					deliver(it)
				default:
					return true
				}
			}
		}
	}
}
