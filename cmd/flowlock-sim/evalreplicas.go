package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/redisstore"
	"github.com/flowlock/flowlock/internal/traffic"
	"github.com/flowlock/flowlock/internal/wire"
)

// Replicated streams (eval --replicas N, issue 13). Envoy spreads one
// client's Checks over every replica, so each request of a stream goes to
// a replica drawn at random (seeded by the stream's seed, so the same flags
// give the same draws). Shared replicas are the service's own: each stack is
// built by wire.Build with --redis-addr, has its shared.Replica started
// against the Redis, and follows the others' quarantine changes by pub/sub.
// Unshared replicas are N independent stacks, what a deployment without
// Redis does.
//
// Virtual time runs from the wall clock: Follow applies the others'
// quarantines by time.Now, so a quarantine that ended in the past would be
// dropped. Each stream is generated at the usual start and shifted by whole
// hours to begin at the next hour (virtualStart), which keeps every gap and
// the engine's alignment with its clock-aligned windows (the 1-minute rate
// window, the 5-minute activity buckets): shifted by any other amount, a
// stream near a threshold can be decided differently from one run to the
// next. Before each request every replica is ticked at its time (ships what
// it queued and feeds its engine the merged stream; with nothing queued it
// does not call Redis), and the stream waits until the replicas agree on the
// client's quarantine, since pub/sub is asynchronous.

// replicaSalt separates the replica draws from the traffic generator's.
const replicaSalt = 0x7265706c69636173 // "replicas"

// settleLimit bounds the wait for the replicas to agree after a tick. A
// quarantine reaches the others in well under a millisecond on loopback;
// the limit only matters if Redis stalls, and each time it is reached is
// counted and reported.
const settleLimit = 500 * time.Millisecond

// maxTimeouts is how many settle waits of one stream may reach
// settleLimit before the run fails.
const maxTimeouts = 3

// readyLimit bounds the wait for a replica's subscription at a stream's
// start. A working Redis subscribes in milliseconds; the bound only ends
// a wait for one that never will, and must not fail a busy machine (CI
// runs every package's race tests at once on two cores: 5 s was missed).
const readyLimit = 30 * time.Second

// maxReplicas bounds --replicas.
const maxReplicas = 16

// replicaSetup says how eval spreads a stream over replicas.
type replicaSetup struct {
	n      int    // replicas; 0 or 1: one stack, eval's usual path
	redis  string // --redis-addr; "" with n > 1: unshared replicas
	prefix string // key prefix of this run: each stream adds its own
	run    *replicaRun
}

// shared reports whether the replicas share state through Redis.
func (r replicaSetup) shared() bool { return r.n > 1 && r.redis != "" }

// replicaRun is what the streams of one run report beside their results.
type replicaRun struct {
	errOnce   sync.Once
	err       error
	timeouts  atomic.Int64 // settle waits that reached settleLimit
	fallbacks atomic.Int64 // batches a replica decided alone: a Redis call failed or ran past its deadline
}

func (r *replicaRun) fail(err error) {
	r.errOnce.Do(func() { r.err = err })
}

// newRunPrefix returns a key prefix no other run uses, so that runs and
// their streams never share state in one Redis.
func newRunPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "flowlock-sim:" + hex.EncodeToString(b[:]) + ":"
}

// runStream runs one stream of sc the way the service decides: through
// fresh decision stacks built by wire.Build from the service's
// configuration with the scenario's excluded paths, the client resolved by
// authz.ClientRules from its own address, every request decided by
// Policy.Decide in virtual time, and the service's periodic sweep at the
// same virtual interval. There are s.rep.n stacks (one when s.rep.n is 0
// or 1: eval's usual path), each request going to one drawn at random. The
// naive baseline sees the same requests; a nil naive skips it (threshold
// sweeps). limit > 0 stops the stream after that many requests.
//
// The stream is detected at the first request a replica denies (with one
// replica, the request that admits it): with shared replicas a
// quarantine is admitted from the merged stream at the next tick, so it is
// enforced from the request after the one that confirmed it.
func (s evalSetup) runStream(sc traffic.Scenario, seed uint64, addr netip.Addr, naive *traffic.Naive, limit int) streamResult {
	cfg := s.cfg
	cfg.Mode = config.ModeEnforce
	cfg.ExcludePaths = sc.ExcludedPaths
	cfg.FleetMinMembers = 0 // one identity is no fleet: runGroup runs the fleets
	if s.threshold != 0 {
		cfg.RiskThreshold = int(s.threshold)
	}
	shared := s.rep.shared()
	// One identity per stack: sharding changes nothing but the set-up cost.
	stacks, base, stop, err := s.replicaStacks(cfg, sc.Name, seed, wire.Extra{Shards: 1})
	defer stop()
	if shared {
		defer func() {
			for _, stack := range stacks {
				s.rep.run.fallbacks.Add(int64(stack.Replica.Stats().Fallbacks.Load()))
			}
		}()
	}
	if err != nil {
		s.rep.run.fail(err)
		return streamResult{}
	}
	// A stream is one client address, unless it rotates (B14) or its
	// members carry TLS fingerprints that the identity composes (B12, H14
	// under --identity): then each request is resolved on its own.
	perRequest := sc.RotateEvery > 0 || cfg.FingerprintHeader != ""
	client := stacks[0].Rules.Resolve(addr, "", "")
	shift := base.Sub(s.start)
	ctx := context.Background()

	var res streamResult
	timeouts := 0
	pick := mrand.New(mrand.NewPCG(seed, replicaSalt))
	st := sc.Stream(seed, s.start)
	var first, last time.Time
	nextSweep := base.Add(cfg.SweepInterval)
	for limit <= 0 || res.requests < limit {
		req, ok := st.Next()
		if !ok {
			break
		}
		now := req.TS.Add(shift)
		last = now
		res.requests++
		if res.requests == 1 {
			first = now
		}
		for !now.Before(nextSweep) {
			for _, stack := range stacks {
				stack.Sweep(nextSweep)
			}
			nextSweep = nextSweep.Add(cfg.SweepInterval)
		}
		if shared {
			for _, stack := range stacks {
				stack.Replica.Tick(ctx, now)
			}
			if !settle(stacks, client.ID, now) {
				s.rep.run.timeouts.Add(1)
				if timeouts++; timeouts == maxTimeouts {
					// Not a slow moment: the replicas do not share.
					s.rep.run.fail(fmt.Errorf("stream %s seed %d: the replicas did not agree on the client's quarantine within %v %d times: is --redis-addr dropping pub/sub?",
						sc.Name, seed, settleLimit, timeouts))
					return res
				}
			}
		}
		if perRequest {
			client = stacks[0].Rules.ResolveWith(hopAddr(addr, req.Hop), "", "", "", req.Fingerprint)
		}
		stack := stacks[pick.IntN(len(stacks))]
		d := stack.Policy.Decide(authz.Request{Client: client, Path: req.Path, Now: now, UserAgent: req.UserAgent})
		if d.Score > res.maxScore || res.maxReason == "" {
			res.maxScore, res.maxReason = d.Score, d.Reason
		}
		if d.Outcome.Denies() && !res.detected {
			res.detected, res.rtd, res.std, res.reason = true, res.requests, now.Sub(first), d.Reason
			if e, ok := stack.Quarantine.Check(client.ID, now); ok {
				res.reason = e.Reason // what it was admitted for, wherever
			}
		}
		if !res.shared {
			if v, ok := stack.Engine.Peek(client.ID, now); ok && v.Shared {
				res.shared, res.sharedAt = true, now.Sub(first)
			}
		}
		if naive != nil && !res.naive {
			if _, quarantined := naive.Observe(now); quarantined {
				res.naive, res.naiveRTD, res.naiveSTD = true, res.requests, now.Sub(first)
			}
		}
	}
	if shared && !res.detected && res.requests > 0 {
		// The last request's quarantine is admitted at the next batch,
		// after the stream: it counts, at the request that would follow.
		end := last.Add(time.Second)
		for _, stack := range stacks {
			stack.Replica.Tick(ctx, end)
		}
		for _, stack := range stacks {
			if e, ok := stack.Quarantine.Check(client.ID, end); ok {
				res.detected, res.rtd, res.std, res.reason = true, res.requests+1, e.Since.Sub(first), e.Reason
				break
			}
		}
	}
	return res
}

// replicaStacks builds the stacks of one stream or group trial of the
// scenario named name: s.rep.n of them (one for 0 or 1) from cfg and x,
// with shared replicas under a key prefix of their own, started and
// following the others. base is where the trial's virtual time starts: the
// next whole hour with several replicas (see above), s.start otherwise.
// Call stop even on error.
func (s evalSetup) replicaStacks(cfg config.Config, name string, seed uint64, x wire.Extra) (stacks []*wire.Stack, base time.Time, stop func(), err error) {
	shared := s.rep.shared()
	if shared {
		cfg.RedisAddr = s.rep.redis
		// Its own state: streams run side by side in one Redis.
		cfg.RedisKeyPrefix = s.rep.prefix + name + ":" + strconv.FormatUint(seed, 10) + ":"
	}
	stacks = make([]*wire.Stack, max(s.rep.n, 1))
	for i := range stacks {
		x.FleetQueue = fleet.SweepQueueSize // drained at each sweep of virtual time
		stacks[i] = wire.Build(cfg, x)
	}
	base, stop = s.start, func() {}
	if len(stacks) > 1 {
		base = virtualStart(time.Now())
	}
	if shared {
		stop, err = startReplicas(context.Background(), stacks, base)
	}
	return stacks, base, stop, err
}

// virtualStart is where replicated streams start: the next whole hour
// after now, a whole number of hours after eval's usual start.
func virtualStart(now time.Time) time.Time {
	return now.Truncate(time.Hour).Add(time.Hour)
}

// startReplicas connects every stack's replica, starts following the
// others' changes, and waits until each is subscribed. stop ends the
// followers and closes the connections; call it even on error.
func startReplicas(ctx context.Context, stacks []*wire.Stack, now time.Time) (stop func(), err error) {
	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() {
		cancel()
		wg.Wait()
		done, end := context.WithCancel(ctx)
		end()
		for _, s := range stacks {
			// Run closes the replica's connection when it returns, and with
			// its context already done it returns at once.
			_ = s.Replica.Run(done)
		}
	}
	// A dial can outlast its timeout on a loaded machine (CI saw one
	// replica of three miss 2 s): Start again until readyLimit, since an
	// unreachable Redis leaves a replica unconnected and Start retryable.
	deadline := time.Now().Add(readyLimit)
	for i, s := range stacks {
		for {
			if err := s.Replica.Start(ctx, now); err != nil {
				return stop, fmt.Errorf("replica %d: %w", i+1, err)
			}
			st := s.Replica.Status()
			if st.Connected {
				break
			}
			if time.Now().After(deadline) {
				return stop, fmt.Errorf("replica %d: --redis-addr not reached within %v: %s", i+1, readyLimit, st.Err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		wg.Go(func() { s.Replica.Follow(fctx) })
	}
	// Start read the shared list once (Resyncs 1). Once subscribed, a
	// follower asks for another read, which the next Tick makes: from then
	// on no change is missed.
	for i, s := range stacks {
		for s.Replica.Stats().Resyncs.Load() < 2 {
			if time.Now().After(deadline) {
				return stop, fmt.Errorf("replica %d: not subscribed to --redis-addr within %v", i+1, readyLimit)
			}
			time.Sleep(100 * time.Microsecond)
			s.Replica.Tick(ctx, now)
		}
	}
	return stop, nil
}

// settle waits until every replica holds the same quarantine of id at now
// (none, or one ending at the same time), at most settleLimit, and reports
// whether they agreed. A replica that admitted at the last tick has written
// it to Redis before Tick returned; the others get it by pub/sub.
func settle(stacks []*wire.Stack, id identity.ID, now time.Time) bool {
	var deadline time.Time
	for wait := 20 * time.Microsecond; ; wait = min(2*wait, time.Millisecond) {
		if agree(stacks, id, now) {
			return true
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(settleLimit)
		} else if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
	}
}

// agree reports whether every stack holds the same quarantine of id at now.
func agree(stacks []*wire.Stack, id identity.ID, now time.Time) bool {
	e0, ok0 := stacks[0].Quarantine.Check(id, now)
	for _, s := range stacks[1:] {
		e, ok := s.Quarantine.Check(id, now)
		if ok != ok0 || ok && !e.Until.Equal(e0.Until) {
			return false
		}
	}
	return true
}

// checkRedis reports, with the setting named, whether addr is a Redis eval
// can share state through.
func checkRedis(ctx context.Context, addr, prefix string) error {
	cfg := config.Default()
	cfg.RedisAddr, cfg.RedisKeyPrefix = addr, prefix
	octx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := redisstore.Open(octx, wire.RedisOptions(cfg))
	if err != nil {
		if errors.Is(err, redisstore.ErrUnreachable) {
			return fmt.Errorf("--redis-addr %s: %w", addr, err)
		}
		return err
	}
	s.Close()
	return nil
}

// dropKeys deletes every key under prefix (the run's), on every node, so
// that a run leaves nothing behind but the timing rings that expire.
func dropKeys(ctx context.Context, addr, prefix string) error {
	cfg := config.Default()
	cfg.RedisAddr = addr
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: cfg.RedisAddrs(), DisableCache: true})
	if err != nil {
		return fmt.Errorf("--redis-addr %s: %w", addr, err)
	}
	defer c.Close()
	for _, node := range c.Nodes() {
		var cursor uint64
		for {
			e, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(prefix+"*").Count(1000).Build()).AsScanEntry()
			if err != nil {
				return fmt.Errorf("--redis-addr %s: clean up %s*: %w", addr, prefix, err)
			}
			for _, k := range e.Elements {
				// Through the client, which routes each key to its slot's
				// master; a replica node's keys are its master's.
				if err := c.Do(ctx, c.B().Unlink().Key(k).Build()).Error(); err != nil {
					return fmt.Errorf("--redis-addr %s: clean up %s: %w", addr, k, err)
				}
			}
			if cursor = e.Cursor; cursor == 0 {
				break
			}
		}
	}
	return nil
}
