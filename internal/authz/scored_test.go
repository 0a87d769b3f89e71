package authz

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/calibrate"
	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
)

// TestScoredSeesTimedRequests: calibration's recorder is told of every
// request timing scored, with its verdict, and of no excluded one.
func TestScoredSeesTimedRequests(t *testing.T) {
	var got []string
	p := NewPolicy(Options{Engine: risk.New(risk.Options{}), Quarantine: quarantine.New(quarantine.Options{}),
		ExcludePaths: []string{"/poll"},
		Scored: func(id identity.ID, path string, v risk.Verdict, _ Outcome, _ time.Time) {
			got = append(got, path)
			if v.Requests == 0 {
				t.Errorf("%s: empty verdict", path)
			}
		}})
	c := Client{ID: identity.FromAddr(netip.MustParseAddr("192.0.2.1"), 64), Addr: netip.MustParseAddr("192.0.2.1")}
	now := time.Now()
	for i, path := range []string{"/a", "/poll", "/b"} {
		p.Decide(Request{Client: c, Path: path, Now: now.Add(time.Duration(i) * time.Second)})
	}
	if len(got) != 2 || got[0] != "/a" || got[1] != "/b" {
		t.Errorf("scored %q; want /a and /b (the poll route is excluded)", got)
	}
}

// TestScoredSeesTheOutcome: Scored is told each request's outcome, the
// quarantine included, so that calibration can keep a caught bot's hours
// out of the innocent ones (told before the quarantine check, they counted
// as false positives and calibration suggested releasing the bot).
func TestScoredSeesTheOutcome(t *testing.T) {
	var told []Outcome
	p := NewPolicy(Options{Engine: risk.New(risk.Options{}), Quarantine: quarantine.New(quarantine.Options{}),
		Scored: func(_ identity.ID, _ string, _ risk.Verdict, out Outcome, _ time.Time) {
			told = append(told, out)
		}})
	c := Client{ID: identity.FromAddr(netip.MustParseAddr("192.0.2.7"), 64), Addr: netip.MustParseAddr("192.0.2.7")}
	start := time.Now()
	seen := map[Outcome]bool{}
	for i := range 60 { // a fixed 500 ms rhythm: admitted, then refused
		d := p.Decide(Request{Client: c, Path: "/x", Now: start.Add(time.Duration(i) * 500 * time.Millisecond)})
		if len(told) != i+1 || told[i] != d.Outcome {
			t.Fatalf("request %d decided %v; Scored told %v", i+1, d.Outcome, told)
		}
		seen[d.Outcome] = true
	}
	if !seen[Admitted] || !seen[Quarantined] {
		t.Errorf("outcomes %v: the bot was never admitted and then refused", seen)
	}
}

// BenchmarkCheckRecorded is BenchmarkCheck's allow path without ("off")
// and with ("on") calibration's recorder on every Check, as the service
// runs it: the difference is the recorder's cost per Check.
func BenchmarkCheckRecorded(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[on]
		b.Run(name, func(b *testing.B) {
			o := Options{Engine: risk.New(risk.Options{MaxClients: 10000}), Quarantine: quarantine.New(quarantine.Options{}),
				Lists: quarantine.NewLists([]netip.Prefix{netip.MustParsePrefix("10.44.0.0/16")}, nil)}
			if on {
				rec := calibrate.NewRecorder(0, time.Now())
				o.Scored = func(id identity.ID, path string, v risk.Verdict, out Outcome, now time.Time) {
					rec.Record(id, path, v.Score, v.Shared, out == Quarantined || out == Admitted, now)
				}
			}
			srv := NewServer(ServerOptions{Policy: NewPolicy(o), MaxSkew: 5 * time.Second, Now: time.Now})
			req := loadFixture(b, "istio-authz-custom-allowed.json")
			req.Attributes.Request.Time = nil
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if resp, err := srv.Check(ctx, req); err != nil || resp.GetOkResponse() == nil {
					b.Fatalf("Check = %v, %v", resp, err)
				}
			}
		})
	}
}
