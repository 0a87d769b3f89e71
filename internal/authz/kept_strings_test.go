package authz

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlock/flowlock/internal/crowd"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
	"github.com/flowlock/flowlock/internal/shared"
	"github.com/flowlock/flowlock/internal/volume"
)

// leanCheckThenReuse sends the named client's request through the lean path at
// now with user agent ua, then overwrites the request bytes as gRPC's
// buffer pool may once the Check is over.
func leanCheckThenReuse(t *testing.T, s *Server, name, ua string, now time.Time) {
	t.Helper()
	req := request("198.51.100.20", map[string]string{"x-user-id": name, "user-agent": ua})
	req.Attributes.Request.Time = timestamppb.New(now)
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leanCall(s, mem.BufferSlice{mem.SliceBuffer(b)}); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'X'
	}
}

// TestCrowdKeysSurviveBufferReuse: on the lean path a name identity
// (identity header, JWT claim) is read from the request buffer, which gRPC
// reuses after the Check. Were crowd.Agents to keep it as a map key, the
// key would change under it: every request of one client would make a new
// entry, and the count would never reach 3 distinct agents.
func TestCrowdKeysSurviveBufferReuse(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	agents := crowd.New(0, 0)
	engine := risk.New(risk.Options{MaxClients: 1000})
	pol := NewPolicy(Options{Engine: engine, Quarantine: quarantine.New(quarantine.Options{}), Crowd: agents})
	srv := NewServer(ServerOptions{Policy: pol, Rules: ClientRules{IdentityHeader: "x-user-id"}, MaxSkew: 5 * time.Second, Now: func() time.Time { return now }})
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 120 {
		now = now.Add(time.Duration(rng.ExpFloat64() * float64(4*time.Second)))
		leanCheckThenReuse(t, srv, "office-7", fmt.Sprintf("ua-%d", i%10), now)
	}
	t.Logf("crowd len %d", agents.Len())
	if n := agents.Len(); n != 1 {
		t.Errorf("crowd counts %d identities for one named client, want 1 (keys alias freed request buffers)", n)
	}
}

// TestSharedQueueKeysSurviveBufferReuse: shared.Replica.Observe queues the
// request time under the Check's identity, and the batch is taken after
// the Check, when the buffer has been reused: the time must be fed (and,
// with Redis, shipped) under the client's name, not what the bytes say by
// then.
func TestSharedQueueKeysSurviveBufferReuse(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	engine := risk.New(risk.Options{MaxClients: 1000})
	q := quarantine.New(quarantine.Options{})
	rep := shared.New(shared.Options{Engine: engine, Quarantine: q})
	pol := NewPolicy(Options{Engine: engine, Observer: rep, Quarantine: q})
	srv := NewServer(ServerOptions{Policy: pol, Rules: ClientRules{IdentityHeader: "x-user-id"}, MaxSkew: 5 * time.Second, Now: func() time.Time { return now }})
	for range 5 {
		now = now.Add(time.Second)
		leanCheckThenReuse(t, srv, "bot-77", "curl/8", now)
	}
	rep.Tick(context.Background(), now.Add(time.Second)) // no Redis: the batch is fed locally
	var got []string
	for _, s := range engine.Top(10, now) {
		got = append(got, s.ID.String())
	}
	want, _ := identity.FromName("bot-77")
	if len(got) != 1 || got[0] != want.String() {
		t.Errorf("engine tracks %q after the batch, want [%s]", got, want)
	}
}

// TestVolumeKeysSurviveBufferReuse: volume.Limiter clones a new identity,
// but assigning to a known key replaces the map's key with the one given;
// were that one to alias the reused buffer, the client would be unknown
// again at the next Check, with a fresh burst, and a named client never
// volume-limited.
func TestVolumeKeysSurviveBufferReuse(t *testing.T) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	engine := risk.New(risk.Options{MaxClients: 1000})
	lim := volume.New(volume.Options{Rate: 1, Burst: 5})
	pol := NewPolicy(Options{Engine: engine, Quarantine: quarantine.New(quarantine.Options{}), Volume: lim})
	recs := &records{}
	srv := NewServer(ServerOptions{Policy: pol, Rules: ClientRules{IdentityHeader: "x-user-id"}, MaxSkew: 5 * time.Second, Now: func() time.Time { return now }, Recorder: recs})
	rng := rand.New(rand.NewPCG(3, 4))
	limited := 0
	for range 100 { // 10 req/s against 1 req/s, burst 5
		now = now.Add(time.Duration(rng.ExpFloat64() * float64(100*time.Millisecond)))
		leanCheckThenReuse(t, srv, "scraper-1", "curl/8", now)
		if recs.got[len(recs.got)-1].Outcome == VolumeLimited {
			limited++
		}
	}
	if limited < 50 {
		t.Errorf("%d of 100 requests at 10x the volume rate were limited, want most", limited)
	}
}

// crowdEscape plays a Poisson phase (1 req/s mean, user agents
// rotating over uas) then a strict 1 s timer with one user agent, through
// the production policy (crowd on), and returns how long the timer phase
// ran before the client was quarantined (capped at limit).
func crowdEscape(t *testing.T, uas, poisson int, mean, period time.Duration, limit time.Duration) time.Duration {
	t.Helper()
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	engine := risk.New(risk.Options{MaxClients: 1000})
	pol := NewPolicy(Options{Engine: engine, Quarantine: quarantine.New(quarantine.Options{}), Crowd: crowd.New(0, 0)})
	client := Client{ID: identity.FromAddr(netip.MustParseAddr("198.51.100.9"), 64), Addr: netip.MustParseAddr("198.51.100.9")}
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range poisson {
		now = now.Add(max(time.Duration(rng.ExpFloat64()*float64(mean)), 20*time.Millisecond))
		d := pol.Decide(Request{Client: client, Path: "/api/items", Now: now, UserAgent: fmt.Sprintf("Mozilla/5.0 build-%d", i%uas)})
		if d.Outcome == Admitted || d.Outcome == Quarantined {
			t.Fatalf("quarantined in the Poisson phase at request %d", i)
		}
	}
	start := now
	for now.Sub(start) < limit {
		now = now.Add(period)
		d := pol.Decide(Request{Client: client, Path: "/api/items", Now: now, UserAgent: "scraper/1"})
		if d.Outcome == Admitted {
			return now.Sub(start)
		}
	}
	return limit
}

// TestCrowdLabelCannotBeBought: user agents shown during a random-looking
// phase do not let a strict timer that follows run unquarantined for long:
// a label set by crowd evidence alone never vetoes a confirmed verdict.
func TestCrowdLabelCannotBeBought(t *testing.T) {
	const limit = 2 * time.Hour
	for _, c := range []struct {
		n            int
		mean, period time.Duration
	}{{40, 2 * time.Second, time.Second}, {40, 2 * time.Second, 2 * time.Second}, {50, 2500 * time.Millisecond, time.Second}, {70, time.Second, time.Second}, {40, 2 * time.Second, 500 * time.Millisecond}} {
		c1 := crowdEscape(t, 1, c.n, c.mean, c.period, limit)
		c3 := crowdEscape(t, 3, c.n, c.mean, c.period, limit)
		t.Logf("%d Poisson requests mean %v, then timer %v: quarantined after %v with one UA, %v with three", c.n, c.mean, c.period, c1, c3)
	}
	control := crowdEscape(t, 1, 40, 2*time.Second, time.Second, limit)
	bought := crowdEscape(t, 3, 40, 2*time.Second, time.Second, limit)
	t.Logf("timer phase before quarantine: one user agent %v, three user agents %v", control, bought)
	if bought > control+3*time.Minute {
		t.Errorf("three user agents for 40 requests (80 s) bought %v of a 1 s timer (control %v); the crowd label should lapse in %v",
			bought, control, 2*time.Minute)
	}
}

// cyclingBotDenied plays a bot that repeats 40 Poisson requests (mean 2 s)
// with agents distinct user agents, then 10 minutes of a 1 s timer with
// one, for two hours, and returns the timer requests and the denials.
func cyclingBotDenied(agents int) (timed, denied int) {
	now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	engine := risk.New(risk.Options{MaxClients: 1000})
	pol := NewPolicy(Options{Engine: engine, Quarantine: quarantine.New(quarantine.Options{}), Crowd: crowd.New(0, 0)})
	client := Client{ID: identity.FromAddr(netip.MustParseAddr("198.51.100.9"), 64), Addr: netip.MustParseAddr("198.51.100.9")}
	rng := rand.New(rand.NewPCG(7, 8))
	start := now
	for now.Sub(start) < 2*time.Hour {
		for i := range 40 {
			now = now.Add(max(time.Duration(rng.ExpFloat64()*float64(2*time.Second)), 20*time.Millisecond))
			if d := pol.Decide(Request{Client: client, Now: now, Path: "/a", UserAgent: fmt.Sprintf("ua-%d", i%agents)}); !d.Allow {
				denied++
			}
		}
		for range 600 {
			now = now.Add(time.Second)
			timed++
			if d := pol.Decide(Request{Client: client, Now: now, Path: "/a", UserAgent: "scraper/1"}); !d.Allow {
				denied++
			}
		}
	}
	return timed, denied
}

// TestUserAgentsBuyACyclingBotNothing: user agents buy a cycling bot nothing. (That
// timing alone catches such a bot once and then labels its address shared
// is a weakness of the timing-only label, reported on its own.)
func TestUserAgentsBuyACyclingBotNothing(t *testing.T) {
	timed, one := cyclingBotDenied(1)
	_, three := cyclingBotDenied(3)
	t.Logf("%d timer requests: %d denied with one user agent, %d with three", timed, one, three)
	if one == 0 {
		t.Errorf("the cycling bot was never denied with one user agent")
	}
	if three < one {
		t.Errorf("three user agents cut the denials of a cycling bot from %d to %d", one, three)
	}
}

// BenchmarkDecideCrowd: the per-Check cost of crowd evidence for a
// calm identity with three user agents that timing does not label (a
// small office at 0.2 req/s), against no crowd.
func BenchmarkDecideCrowd(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("crowd=%v", on), func(b *testing.B) {
			var agents *crowd.Agents
			if on {
				agents = crowd.New(0, 0)
			}
			engine := risk.New(risk.Options{MaxClients: 1000})
			pol := NewPolicy(Options{Engine: engine, Quarantine: quarantine.New(quarantine.Options{}), Crowd: agents})
			client := Client{ID: identity.FromAddr(netip.MustParseAddr("198.51.100.9"), 64), Addr: netip.MustParseAddr("198.51.100.9")}
			now := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
			rng := rand.New(rand.NewPCG(9, 9))
			uas := []string{"Mozilla/5.0 (Windows NT 10.0) Chrome/131", "Mozilla/5.0 (Macintosh) Safari/605", "Mozilla/5.0 (X11; Linux) Firefox/133"}
			for i := range 40 {
				now = now.Add(time.Duration(rng.ExpFloat64() * float64(5*time.Second)))
				pol.Decide(Request{Client: client, Now: now, Path: "/a", UserAgent: uas[i%3]})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				now = now.Add(time.Duration(rng.ExpFloat64() * float64(5*time.Second)))
				pol.Decide(Request{Client: client, Now: now, Path: "/a", UserAgent: uas[i%3]})
			}
		})
	}
}
