package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// TestTarpit runs the built flowlock-authz with --quarantine-action tarpit:
// a quarantined client's 403 comes after --tarpit-delay, a calm client's
// allow at once; with --tarpit-max-held held already, the next deny comes
// at once; a Check whose deadline (Envoy's ext_authz timeout) is shorter
// than the delay still gets its 403 in time; /metrics counts all of it.
func TestTarpit(t *testing.T) {
	const delay = 300 * time.Millisecond
	svc := flowlocktest.Start(t, authz(), "--admin-token", adminToken,
		"--quarantine-action", "tarpit", "--tarpit-delay", delay.String(), "--tarpit-max-held", "1")
	authc, health := clients(t, svc)
	waitServing(t, health)
	const bot, calm = "198.51.100.66", "198.51.100.67"
	if code, body := svc.API(t, "POST", "/api/v1/quarantine", adminToken, `{"identity":"`+bot+`","ttl":"1h"}`); code != 200 && code != 201 {
		t.Fatalf("ban = %d %s", code, body)
	}

	timed := func(ip string, timeout time.Duration) (*authv3.CheckResponse, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		start := time.Now()
		resp, err := authc.Check(ctx, checkFrom(ip, "/data"))
		if err != nil {
			t.Fatalf("Check from %s: %v (Envoy would fail open)", ip, err)
		}
		return resp, time.Since(start)
	}

	if resp, took := timed(bot, 5*time.Second); resp.GetDeniedResponse().GetStatus().GetCode() != 403 || took < delay {
		t.Errorf("quarantined: %v after %v; want a 403 held for %v", resp.GetStatus(), took, delay)
	}
	if resp, took := timed(calm, 5*time.Second); resp.GetOkResponse() == nil || took >= delay {
		t.Errorf("calm: %v after %v; want an allow at once", resp.GetStatus(), took)
	}
	if resp, took := timed(bot, 150*time.Millisecond); resp.GetDeniedResponse() == nil || took >= 150*time.Millisecond {
		t.Errorf("quarantined with a 150ms deadline: %v after %v; want the 403 before the deadline", resp.GetStatus(), took)
	}

	// Two at once with room for one: one is held, the other answered at once.
	var wg sync.WaitGroup
	took := make([]time.Duration, 2)
	for i := range took {
		wg.Go(func() { _, took[i] = timed(bot, 5*time.Second) })
	}
	wg.Wait()
	if fast, slow := min(took[0], took[1]), max(took[0], took[1]); slow < delay || fast >= delay {
		t.Errorf("two concurrent quarantined checks took %v; want one held and one at once", took)
	}

	_, metrics := svc.API(t, "GET", "/metrics", "", "")
	for _, want := range []string{`flowlock_authz_tarpit_total{result="held"} 3`, `flowlock_authz_tarpit_total{result="over_cap"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
