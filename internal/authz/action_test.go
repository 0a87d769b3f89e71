package authz

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/volume"
)

// ban quarantines ip by hand for an hour.
func ban(t testing.TB, p *Policy, ip string, now time.Time) {
	t.Helper()
	if _, err := p.Ban(identity.FromAddr(netip.MustParseAddr(ip), 64), time.Hour, "manual", now); err != nil {
		t.Fatal(err)
	}
}

// TestQuarantineActionGRPC: through the real gRPC server, a quarantined
// client is answered as --quarantine-action says, and a calm client is
// allowed plainly under every action (never routed to the decoy, never
// held). Shadow mode never deceives: it allows.
func TestQuarantineActionGRPC(t *testing.T) {
	const delay = 150 * time.Millisecond
	for _, tc := range []struct {
		action   Action
		mode     Mode
		honeypot bool // the quarantined client gets the decoy route
		denied   bool // the quarantined client gets a 403
		held     bool // ... after the tarpit delay
	}{
		{action: ActionDeny, denied: true},
		{action: ActionHoneypot, honeypot: true},
		{action: ActionTarpit, denied: true, held: true},
		{action: ActionHoneypot, mode: Shadow},
		{action: ActionTarpit, mode: Shadow},
	} {
		t.Run(tc.action.String()+"/"+tc.mode.String(), func(t *testing.T) {
			tp := NewTarpit(delay, 4)
			f := newFixture(t, setup{action: tc.action, mode: tc.mode, tarpit: tp})
			ban(t, f.policy, "203.0.113.7", f.now)

			start := time.Now()
			resp := f.check(t, request("203.0.113.7", nil))
			took := time.Since(start)
			switch {
			case tc.denied:
				if resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
					t.Fatalf("quarantined client: %v, want a 403", resp)
				}
			default:
				h := okHeaders(t, resp)
				if got := h[routeHeader]; (got == routeHoneypot) != tc.honeypot {
					t.Errorf("quarantined client's %s = %q, want honeypot: %v", routeHeader, got, tc.honeypot)
				}
				if h[riskHeader] == "" {
					t.Errorf("allow lacks %s: %v", riskHeader, h)
				}
			}
			// A timer never fires early, so a hold shows in the time taken;
			// whether there was one is in the tarpit's count.
			if held, _ := tp.Stats(); (held == 1) != tc.held || (tc.held && took < delay) {
				t.Errorf("quarantined answer took %v after %d holds; want held for %v: %v", took, held, delay, tc.held)
			}
			before, _ := tp.Stats()
			calm := f.check(t, request("198.51.100.1", nil))
			if h := okHeaders(t, calm); h[routeHeader] != "" {
				t.Errorf("calm client got %s: %q", routeHeader, h[routeHeader])
			}
			if after, _ := tp.Stats(); after != before {
				t.Error("calm client's answer was held")
			}
		})
	}
}

// TestHoneypotAdmittedBot: the request that admits a bot to quarantine is
// already routed to the decoy, and so is every one after it: the bot sees
// no 403 at any point.
func TestHoneypotAdmittedBot(t *testing.T) {
	f := newFixture(t, setup{action: ActionHoneypot})
	start := f.now
	admitted := false
	for i := 1; i <= 40; i++ {
		f.now = start.Add(time.Duration(i) * 500 * time.Millisecond)
		req := request("198.51.100.20", nil)
		req.Attributes.Request.Time = timestamppb.New(f.now)
		resp := f.check(t, req)
		if resp.GetDeniedResponse() != nil {
			t.Fatalf("request %d denied under honeypot: %v", i, resp)
		}
		outcome := f.recs.got[len(f.recs.got)-1].Outcome
		admitted = admitted || outcome == Admitted
		if got := okHeaders(t, resp)[routeHeader]; (got == routeHoneypot) != admitted {
			t.Fatalf("request %d (%v): %s = %q, admitted %v", i, outcome, routeHeader, got, admitted)
		}
	}
	if !admitted {
		t.Fatal("fixed 500 ms bot never admitted within 40 requests")
	}
}

// TestHoneypotOnlyForTiming: the deny list and the volume limit deny even
// under honeypot or tarpit, at once; only a client that timing caught is
// deceived or held.
func TestHoneypotOnlyForTiming(t *testing.T) {
	for _, action := range []Action{ActionHoneypot, ActionTarpit} {
		lists := quarantine.NewLists(nil, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
		f := newFixture(t, setup{action: action, lists: lists, tarpit: NewTarpit(time.Hour, 4)})
		f.policy.volume = volume.New(volume.Options{Rate: 1, Burst: 1})
		var codes []int
		for _, ip := range []string{"192.0.2.9", "198.51.100.5", "198.51.100.5", "198.51.100.5"} {
			codes = append(codes, int(f.check(t, request(ip, nil)).GetDeniedResponse().GetStatus().GetCode()))
			if d := f.recs.got[len(f.recs.got)-1]; d.Outcome != Allowed && d.Outcome != DenyListed && d.Outcome != VolumeLimited {
				t.Fatalf("%v: unexpected outcome %v", action, d.Outcome)
			}
		}
		if want := []int{403, 0, 0, 429}; !slices.Equal(codes, want) {
			t.Errorf("%v: statuses %v, want %v (deny list and volume limit as always)", action, codes, want)
		}
		if held, _ := f.srv.tarpit.Stats(); held != 0 {
			t.Errorf("%v: the tarpit held %d answers of clients timing did not catch", action, held)
		}
	}
}

// TestHoneypotRouteHeaderFromClient: a client cannot route itself with its
// own x-flowlock-route: a calm client's is removed; a quarantined client's
// is overwritten, not removed after being set.
func TestHoneypotRouteHeaderFromClient(t *testing.T) {
	f := newFixture(t, setup{action: ActionHoneypot})
	forged := map[string]string{routeHeader: "honeypot", "x-flowlock-other": "1"}
	calm := f.check(t, request("198.51.100.1", forged)).GetOkResponse()
	if !slices.Contains(calm.GetHeadersToRemove(), routeHeader) {
		t.Errorf("calm client's own %s not removed: %v", routeHeader, calm.GetHeadersToRemove())
	}
	ban(t, f.policy, "203.0.113.7", f.now)
	bot := f.check(t, request("203.0.113.7", forged))
	if okHeaders(t, bot)[routeHeader] != routeHoneypot {
		t.Errorf("quarantined client not routed: %v", bot)
	}
	if rm := bot.GetOkResponse().GetHeadersToRemove(); slices.Contains(rm, routeHeader) || !slices.Contains(rm, "x-flowlock-other") {
		t.Errorf("headers_to_remove = %v, want x-flowlock-other only", rm)
	}
}

// TestHoneypotDoesNotAllocate: a quarantined client's decoy answer is a
// shared message, as a calm client's allow is (TestCheckAllowDoesNotAllocate):
// the two cost the same, so timing cannot tell them apart.
func TestHoneypotDoesNotAllocate(t *testing.T) {
	f := newFixture(t, setup{action: ActionHoneypot})
	f.srv.rec = nopRecorder{}
	ban(t, f.policy, "10.44.0.22", f.now)
	req := loadFixture(t, "istio-authz-custom-allowed.json")
	if resp, _ := f.srv.Check(context.Background(), req); resp.GetOkResponse() == nil {
		t.Fatalf("quarantined client not routed to the decoy: %v", resp)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		f.now = f.now.Add(time.Second)
		if _, err := f.srv.Check(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("honeypot Check allocated %v times, want 0", allocs)
	}
	for s := range 101 {
		d := Decision{Score: uint8(s), Action: ActionHoneypot}
		if responseFor(d, nil) != honeypotByScore[s].msg {
			t.Fatalf("score %d: honeypot answer is not the shared one", s)
		}
		if a, ok := answerFor(d, nil); !ok || a != honeypotByScore[s] || a.wire == nil {
			t.Fatalf("score %d: the lean path's honeypot answer is not the shared, encoded one", s)
		}
	}
}

// TestTarpitCap: at most max answers are held at once; past that, the
// answer goes at once and is counted; cancellation ends a hold. In a
// synctest bubble, so the clock is the test's.
func TestTarpitCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp := NewTarpit(time.Hour, 2)
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		for range 2 {
			wg.Go(func() {
				if !tp.Hold(ctx) {
					t.Error("a hold under the cap did not hold")
				}
			})
		}
		synctest.Wait() // both are holding
		start := time.Now()
		if tp.Hold(t.Context()) {
			t.Error("a hold over the cap held")
		}
		if took := time.Since(start); took != 0 {
			t.Errorf("over the cap took %v, want at once", took)
		}
		time.Sleep(time.Minute)
		cancel() // cancellation ends the holds, long before their hour
		wg.Wait()
		if took := time.Since(start); took != time.Minute {
			t.Errorf("holds ended after %v, want at the cancel (1m)", took)
		}
		if held, over := tp.Stats(); held != 2 || over != 1 || tp.Holding() != 0 {
			t.Errorf("held %d, over cap %d, holding %d; want 2, 1, 0", held, over, tp.Holding())
		}
	})
}

// TestTarpitDeadline: a hold ends well before the caller's deadline (Envoy's
// ext_authz timeout reaches the Check as its deadline), so the tarpit never
// makes the proxy time out and fail open; with too little time left it does
// not hold at all.
func TestTarpitDeadline(t *testing.T) {
	for _, tc := range []struct {
		delay, left time.Duration
		deadline    bool
		want        time.Duration
	}{
		{200 * time.Millisecond, 0, false, 200 * time.Millisecond},                     // no deadline: the delay
		{200 * time.Millisecond, 250 * time.Millisecond, true, 200 * time.Millisecond}, // Envoy's 250ms: the delay fits
		{time.Hour, 250 * time.Millisecond, true, 200 * time.Millisecond},              // a fifth of the time left kept
		{time.Hour, 50 * time.Millisecond, true, 30 * time.Millisecond},                // at least tarpitMargin kept
		{time.Hour, 10 * time.Millisecond, true, -10 * time.Millisecond},               // no time: no hold
	} {
		if got := holdFor(tc.delay, tc.left, tc.deadline); got != tc.want {
			t.Errorf("holdFor(%v, %v, %v) = %v, want %v", tc.delay, tc.left, tc.deadline, got, tc.want)
		}
	}
	synctest.Test(t, func(t *testing.T) {
		tp := NewTarpit(time.Hour, 1)
		ctx, cancel := context.WithTimeout(t.Context(), 250*time.Millisecond)
		defer cancel()
		start := time.Now()
		if !tp.Hold(ctx) || time.Since(start) != 200*time.Millisecond {
			t.Errorf("hold with 250ms left took %v, want 200ms", time.Since(start))
		}
		short, cancel2 := context.WithTimeout(t.Context(), tarpitMargin/2)
		defer cancel2()
		if tp.Hold(short) {
			t.Error("held with no time left before the deadline")
		}
	})
	var nilTarpit *Tarpit
	if nilTarpit.Hold(context.Background()) || NewTarpit(0, 5) != nil {
		t.Error("a nil or zero-delay tarpit holds")
	}
}

// TestTarpitThroughGRPCDeadline: the same through gRPC, where the deadline
// travels as grpc-timeout the way Envoy sends its ext_authz timeout.
func TestTarpitThroughGRPCDeadline(t *testing.T) {
	tp := NewTarpit(time.Hour, 4)
	f := newFixture(t, setup{action: ActionTarpit, tarpit: tp})
	ban(t, f.policy, "203.0.113.7", f.now)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := f.client.Check(ctx, request("203.0.113.7", nil))
	if err != nil {
		t.Fatalf("tarpitted Check missed the deadline (Envoy would fail open): %v", err)
	}
	if held, _ := tp.Stats(); resp.GetDeniedResponse() == nil || held != 1 {
		t.Errorf("tarpitted answer = %v after %d holds, want the 403 after one", resp, held)
	}
}

// TestForwardAuthActions: forward-auth speaks the same actions: 200 with
// X-Flowlock-Route: honeypot for the proxy to route on, and a held 403.
func TestForwardAuthActions(t *testing.T) {
	const delay = 100 * time.Millisecond
	for _, action := range []Action{ActionDeny, ActionHoneypot, ActionTarpit} {
		t.Run(action.String(), func(t *testing.T) {
			tp := NewTarpit(delay, 4)
			f := newFAFixture(t, setup{action: action, rules: ClientRules{TrustedProxies: loopback}, tarpit: tp})
			f.h.now = time.Now // the recorded duration is measured on it
			ban(t, f.policy, "203.0.113.7", time.Now())
			start := time.Now()
			w := f.serve(faRequest("GET", "/check", "127.0.0.1:4000", map[string]string{"X-Forwarded-For": "203.0.113.7"}))
			took := time.Since(start)
			wantCode := http.StatusForbidden
			if action == ActionHoneypot {
				wantCode = http.StatusOK
			}
			if w.Code != wantCode {
				t.Fatalf("status %d, want %d", w.Code, wantCode)
			}
			if got := w.Header().Get(hdrRoute); (got == routeHoneypot) != (action == ActionHoneypot) {
				t.Errorf("%s = %q", hdrRoute, got)
			}
			if action == ActionHoneypot && (w.Header().Get(hdrRisk) == "" || w.Body.Len() != 0) {
				t.Errorf("honeypot answer is not an allow: %v %q", w.Header(), w.Body)
			}
			if held, _ := tp.Stats(); (held == 1) != (action == ActionTarpit) || (held == 1 && took < delay) {
				t.Errorf("answer took %v after %d holds", took, held)
			}
			if rec := f.last(t); rec.Duration >= delay {
				t.Errorf("recorded duration %v includes the hold", rec.Duration)
			}
			before, _ := tp.Stats()
			calm := f.serve(faRequest("GET", "/check", "127.0.0.1:4000", map[string]string{"X-Forwarded-For": "198.51.100.1"}))
			if after, _ := tp.Stats(); calm.Code != http.StatusOK || calm.Header().Get(hdrRoute) != "" || after != before {
				t.Errorf("calm client: %d %v, held %v", calm.Code, calm.Header(), after != before)
			}
		})
	}
}

func TestParseAction(t *testing.T) {
	for _, a := range []Action{ActionDeny, ActionHoneypot, ActionTarpit} {
		if got, ok := ParseAction(a.String()); !ok || got != a {
			t.Errorf("ParseAction(%q) = %v, %v", a, got, ok)
		}
	}
	if _, ok := ParseAction("redirect"); ok {
		t.Error("ParseAction accepted an unknown action")
	}
}

// actionFixture is a Check server whose client 10.44.0.22 (the Istio
// fixture's) is calm (allow-listed, never quarantined) for "allow", and
// banned otherwise, under ActionHoneypot ("honeypot") or ActionDeny.
func actionFixture(b *testing.B, name string) *fixture {
	var lists *quarantine.Lists
	action := ActionHoneypot
	switch name {
	case "allow":
		lists = quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.44.0.0/16")}, nil)
	case "deny":
		action = ActionDeny
	}
	f := newFixture(b, setup{lists: lists, action: action})
	f.srv.now = time.Now
	if name != "allow" {
		ban(b, f.policy, "10.44.0.22", time.Now())
	}
	return f
}

// BenchmarkCheckAction is BenchmarkCheckGRPCAction without gRPC: the
// handler alone, where the allow and the honeypot answer are both a shared
// message (0 allocations).
func BenchmarkCheckAction(b *testing.B) {
	for _, name := range []string{"allow", "honeypot", "deny"} {
		b.Run("action="+name, func(b *testing.B) {
			f := actionFixture(b, name)
			f.srv.rec = nopRecorder{}
			req := loadFixture(b, "istio-authz-custom-allowed.json")
			req.Attributes.Request.Time = nil
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := f.srv.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCheckGRPCAction compares what a calm client's allow and a
// quarantined client's honeypot answer cost through real gRPC (marshalling
// and HTTP/2 framing over an in-memory connection): a bot must not be able
// to tell the decoy by the time the Check takes. The deny is there for
// scale.
func BenchmarkCheckGRPCAction(b *testing.B) {
	for _, name := range []string{"allow", "honeypot", "deny"} {
		b.Run("action="+name, func(b *testing.B) {
			f := actionFixture(b, name)
			req := loadFixture(b, "istio-authz-custom-allowed.json")
			req.Attributes.Request.Time = nil
			ctx := context.Background()
			var resp *authv3.CheckResponse
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if resp, err = f.client.Check(ctx, req); err != nil {
					b.Fatal(err)
				}
			}
			if (resp.GetOkResponse() == nil) != (name == "deny") {
				b.Fatalf("%s answered %v", name, resp)
			}
		})
	}
}

// Holding returns how many answers are being held now: only the tests
// ask (the service reports Stats).
func (t *Tarpit) Holding() int {
	if t == nil {
		return 0
	}
	return len(t.slots)
}
