// Package replicas runs several flowlock-authz processes against one real
// redis-server (and a real Redis Cluster), sends each Check to a replica
// chosen at random, as Envoy's load balancing does, and checks that they
// decide as one: a metronome is caught as soon as by one replica, a ban or
// release through any replica reaches all, a dead Redis costs no error and
// no stall, and a restarted replica enforces the standing bans.
package replicas

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
	"github.com/flowlock/flowlock/test/flowlocktest"
)

func TestMain(m *testing.M) { os.Exit(flowlocktest.Main(m, "flowlock-authz")) }

// token is the admin token of every replica.
const token = "replicas-test-admin-token-0123456789"

// bounded are the limits each replica runs under.
var bounded = flowlocktest.Limits{AddressSpace: 2 << 30, OpenFiles: 1024}

// replica is one running flowlock-authz and its Check client.
type replica struct {
	*flowlocktest.Service
	client authv3.AuthorizationClient
}

// startReplicas starts n replicas sharing redisAddrs (none: unshared).
func startReplicas(t *testing.T, n int, redisAddrs string, extra ...string) []*replica {
	t.Helper()
	out := make([]*replica, n)
	for i := range out {
		out[i] = startReplica(t, redisAddrs, extra...)
	}
	return out
}

func startReplica(t *testing.T, redisAddrs string, extra ...string) *replica {
	t.Helper()
	args := append([]string{"--admin-token", token}, extra...)
	if redisAddrs != "" {
		args = append(args, "--redis-addr", redisAddrs)
	}
	s := flowlocktest.StartLimited(t, bounded, flowlocktest.Bin("flowlock-authz"), args...)
	return &replica{Service: s, client: authv3.NewAuthorizationClient(s.Dial(t))}
}

// check sends one Check for addr stamped now, as Envoy does, and reports
// whether it was denied.
func (r *replica) check(t *testing.T, addr string) (denied bool, took time.Duration, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	resp, err := r.client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(start),
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/data", Headers: map[string]string{":path": "/data", ":method": "GET"}},
		},
	}})
	took = time.Since(start)
	if err != nil {
		return false, took, err
	}
	return resp.GetStatus().GetCode() == int32(codes.PermissionDenied), took, nil
}

// metronome sends a request from addr every gap to a replica picked by
// pick, until one is denied or limit requests were sent, and returns the
// 1-based number of the first denied request (0: none).
func metronome(t *testing.T, rs []*replica, addr string, gap time.Duration, limit int, rng *rand.Rand) int {
	t.Helper()
	tk := time.NewTicker(gap)
	defer tk.Stop()
	for i := 1; i <= limit; i++ {
		<-tk.C
		denied, _, err := rs[rng.IntN(len(rs))].check(t, addr)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if denied {
			return i
		}
	}
	return 0
}

// TestReplicasCatchAMetronomeAsOneDoes: a fixed-interval bot whose Checks
// go to three replicas at random is quarantined within the same number of
// requests (±20 %) as by one replica, and then every replica denies it.
// Unshared, three replicas see a thinned stream that looks human.
func TestReplicasCatchAMetronomeAsOneDoes(t *testing.T) {
	redis := redistest.Start(t)
	rng := rand.New(rand.NewPCG(1, 2))
	const gap, limit = 50 * time.Millisecond, 120

	one := startReplicas(t, 1, "")
	alone := metronome(t, one, "203.0.113.10", gap, limit, rng)
	if alone == 0 {
		t.Fatalf("one replica never caught a %v metronome in %d requests", gap, limit)
	}

	three := startReplicas(t, 3, redis.Addr)
	shared := metronome(t, three, "203.0.113.11", gap, limit, rng)
	t.Logf("a %v metronome: denied at request %d by one replica, %d by three sharing Redis", gap, alone, shared)
	if shared == 0 || math.Abs(float64(shared-alone)) > 0.2*float64(alone)+1 {
		t.Fatalf("three replicas denied at request %d, one at %d: want within 20 %%", shared, alone)
	}
	// Every replica denies it now (the quarantine is one list).
	waitFor(t, time.Second, "every replica denies the bot", func() bool {
		for _, r := range three {
			if d, _, err := r.check(t, "203.0.113.11"); err != nil || !d {
				return false
			}
		}
		return true
	})
}

// TestReplicasSpareAHuman: a person's log-normal think times, spread over
// three replicas, are never quarantined.
func TestReplicasSpareAHuman(t *testing.T) {
	if testing.Short() {
		t.Skip("sends a human's rhythm in real time for 40 s")
	}
	redis := redistest.Start(t)
	rs := startReplicas(t, 3, redis.Addr)
	rng := rand.New(rand.NewPCG(3, 4))
	deadline := time.Now().Add(40 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		// An action: one to four calls ~150 ms apart, then a log-normal
		// think time with median 1.5 s and σ 1.
		for range 1 + rng.IntN(4) {
			n++
			if denied, _, err := rs[rng.IntN(3)].check(t, "198.51.100.20"); err != nil || denied {
				t.Fatalf("request %d: denied %v, err %v", n, denied, err)
			}
			time.Sleep(time.Duration(150*math.Exp(0.5*rng.NormFloat64())) * time.Millisecond)
		}
		time.Sleep(time.Duration(1500*math.Exp(rng.NormFloat64())) * time.Millisecond)
	}
	t.Logf("%d requests over 40 s through three replicas: none denied", n)
}

// TestBanAndReleasePropagate: a ban through replica 1's admin API is
// enforced by replicas 2 and 3 within a second, and a release through
// replica 3 frees the client on replica 1.
func TestBanAndReleasePropagate(t *testing.T) {
	redis := redistest.Start(t)
	rs := startReplicas(t, 3, redis.Addr)
	const client = "192.0.2.50"
	if code, body := rs[0].API(t, "POST", "/api/v1/quarantine", token, `{"identity":"`+client+`","ttl":"10m","reason":"test"}`); code != 200 {
		t.Fatalf("ban: %d %s", code, body)
	}
	waitFor(t, time.Second, "replicas 2 and 3 deny the banned client", func() bool {
		for _, r := range rs[1:] {
			if d, _, err := r.check(t, client); err != nil || !d {
				return false
			}
		}
		return true
	})
	if code, body := rs[2].API(t, "DELETE", "/api/v1/quarantine/"+client, token, ""); code != 200 {
		t.Fatalf("release: %d %s", code, body)
	}
	waitFor(t, time.Second, "replica 1 allows the released client", func() bool {
		d, _, err := rs[0].check(t, client)
		return err == nil && !d
	})
	// Every replica lists the same quarantine.
	for i, r := range rs {
		if _, body := r.API(t, "GET", "/api/v1/quarantine", "", ""); strings.Contains(body, client) {
			t.Errorf("replica %d still lists the released client: %s", i+1, body)
		}
	}
}

// TestRedisDiesMidLoad: Redis killed under load costs no gRPC error and no
// Check slower than the background deadline plus scheduling noise; the
// replicas say they fall back; a ban admitted while Redis is away reaches
// the other replicas once it is back.
func TestRedisDiesMidLoad(t *testing.T) {
	redis := redistest.Start(t)
	rs := startReplicas(t, 3, redis.Addr)

	// A ban from before the outage: Redis comes back empty, and that must
	// not release it.
	const before = "192.0.2.76"
	if code, body := rs[1].API(t, "POST", "/api/v1/quarantine", token, `{"identity":"`+before+`","ttl":"10m"}`); code != 200 {
		t.Fatalf("ban: %d %s", code, body)
	}
	waitFor(t, time.Second, "every replica has the first ban", func() bool {
		for _, r := range rs {
			if d, _, err := r.check(t, before); err != nil || !d {
				return false
			}
		}
		return true
	})

	var errs, checks atomic.Int64
	var slowest atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				_, took, err := rs[rng.IntN(3)].check(t, fmt.Sprintf("198.51.100.%d", 1+rng.IntN(200)))
				checks.Add(1)
				if err != nil {
					errs.Add(1)
				}
				for {
					old := slowest.Load()
					if int64(took) <= old || slowest.CompareAndSwap(old, int64(took)) {
						break
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	time.Sleep(time.Second)
	redis.Kill()
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	t.Logf("%d checks, %d errors, slowest %v, Redis killed in the middle", checks.Load(), errs.Load(), time.Duration(slowest.Load()))
	if errs.Load() != 0 {
		t.Errorf("%d gRPC errors while Redis died", errs.Load())
	}
	// The Check path never waits on Redis: nothing near a Redis deadline,
	// let alone a dial timeout. 250 ms leaves room for a loaded CI machine.
	if took := time.Duration(slowest.Load()); took > 250*time.Millisecond {
		t.Errorf("slowest Check took %v with Redis dead", took)
	}
	waitFor(t, 3*time.Second, "readiness says fallback", func() bool {
		code, body := rs[0].API(t, "GET", "/readyz", "", "")
		return code == 200 && strings.Contains(body, "local fallback")
	})

	// A ban while Redis is away is enforced locally at once, and written
	// when Redis is back.
	const client = "192.0.2.77"
	if code, body := rs[0].API(t, "POST", "/api/v1/quarantine", token, `{"identity":"`+client+`","ttl":"10m"}`); code != 200 {
		t.Fatalf("ban while Redis is away: %d %s", code, body)
	}
	if d, _, _ := rs[0].check(t, client); !d {
		t.Fatal("the replica that banned does not deny")
	}
	redis.Restart()
	waitFor(t, 10*time.Second, "the ban made while Redis was away reaches replicas 2 and 3", func() bool {
		for _, r := range rs[1:] {
			if d, _, err := r.check(t, client); err != nil || !d {
				return false
			}
		}
		return true
	})
	waitFor(t, 5*time.Second, "readiness says connected", func() bool {
		_, body := rs[1].API(t, "GET", "/readyz", "", "")
		return strings.Contains(body, "redis connected")
	})
	time.Sleep(500 * time.Millisecond) // every replica has resynced
	for i, r := range rs {
		if d, _, err := r.check(t, before); err != nil || !d {
			t.Errorf("replica %d released the ban from before the outage when Redis came back empty", i+1)
		}
	}
	if out, _ := redis.CLI("KEYS", "flowlock:q:*"); !strings.Contains(out, "flowlock:q:") {
		t.Errorf("the bans were not written back to the restarted Redis: %q", out)
	}
}

// TestRestartedReplicaEnforcesStandingBans: a replica killed with SIGKILL
// and started again enforces every standing ban from Redis as soon as it
// serves.
func TestRestartedReplicaEnforcesStandingBans(t *testing.T) {
	redis := redistest.Start(t)
	rs := startReplicas(t, 2, redis.Addr)
	clients := []string{"192.0.2.91", "192.0.2.92", "2001:db8:5::1"}
	for _, c := range clients {
		if code, body := rs[0].API(t, "POST", "/api/v1/quarantine", token, `{"identity":"`+c+`","ttl":"1h"}`); code != 200 {
			t.Fatalf("ban %s: %d %s", c, code, body)
		}
	}
	waitFor(t, time.Second, "replica 2 has the bans", func() bool {
		d, _, err := rs[1].check(t, clients[2])
		return err == nil && d
	})
	if err := rs[1].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-rs[1].Done()
	again := startReplica(t, redis.Addr) // Start returns once it listens, SERVING
	for _, c := range clients {
		if d, _, err := again.check(t, c); err != nil || !d {
			t.Errorf("restarted replica: %s denied=%v err=%v, want denied at once", c, d, err)
		}
	}
}

// TestReplicasOnACluster: the same sharing over a Redis Cluster of three
// masters, found from one seed node.
func TestReplicasOnACluster(t *testing.T) {
	cluster := redistest.StartCluster(t, 3)
	seeds := strings.Join(cluster.Addrs(), ",")
	rs := startReplicas(t, 3, seeds)
	rng := rand.New(rand.NewPCG(5, 6))
	n := metronome(t, rs, "203.0.113.12", 50*time.Millisecond, 120, rng)
	if n == 0 || n > 24 {
		t.Fatalf("three replicas on a cluster denied a 50 ms metronome at request %d, want by 24", n)
	}
	const client = "192.0.2.60"
	if code, body := rs[1].API(t, "POST", "/api/v1/quarantine", token, `{"identity":"`+client+`","ttl":"10m"}`); code != 200 {
		t.Fatalf("ban: %d %s", code, body)
	}
	waitFor(t, time.Second, "replicas 1 and 3 deny the client banned through 2", func() bool {
		for _, i := range []int{0, 2} {
			if d, _, err := rs[i].check(t, client); err != nil || !d {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
