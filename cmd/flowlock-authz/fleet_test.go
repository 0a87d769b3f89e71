package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/wire"
)

// TestExplainFleet: the explain view of a fleet member shows the fleet
// signal with its value (the fleet's size) and threshold, and the
// dashboard's fleet view lists the fleet; a client outside it shows 0.
func TestExplainFleet(t *testing.T) {
	cfg := config.Default()
	stack := wire.Build(cfg, wire.Extra{})
	b := &backend{stack: stack, m: newMetrics(prometheus.NewRegistry())}
	svc := &service{cfg: cfg, stack: stack}
	member := func(i int) authz.Client {
		return stack.Rules.Resolve(netip.AddrFrom4([4]byte{10, 7, 0, byte(i)}), "", "")
	}
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	next := now.Add(cfg.SweepInterval)
	for k := range 6 {
		now = now.Add(time.Duration(45+20*k) * time.Second)
		for i := range 30 {
			at := now.Add(time.Duration(i*30) * time.Millisecond)
			for !at.Before(next) {
				stack.Sweep(next)
				next = next.Add(cfg.SweepInterval)
			}
			stack.Policy.Decide(authz.Request{Client: member(i), Path: "/api/quotes", Now: at})
		}
	}
	stack.Sweep(next)
	stranger := member(200)
	stack.Policy.Decide(authz.Request{Client: stranger, Path: "/api/quotes", Now: next})

	for _, c := range []struct {
		id    authz.Client
		value float64
	}{{member(3), 30}, {stranger, 0}} {
		x, ok := b.Explain(c.id.ID, next)
		if !ok {
			t.Fatalf("Explain(%s) found nothing", c.id.ID)
		}
		last := x.Features[len(x.Features)-1]
		if last.Name != "fleet" || last.Value != c.value || !strings.Contains(last.Threshold, ">= 20 identities") {
			t.Errorf("Explain(%s) fleet feature = %+v, want value %v", c.id.ID, last, c.value)
		}
	}
	view := svc.fleets()()
	if !view.Enabled || len(view.Fleets) != 1 || view.Fleets[0].Size != 30 || len(view.Fleets[0].Members) != 30 {
		t.Errorf("fleet view = %+v", view)
	}
}
