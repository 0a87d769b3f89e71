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
// allow at once; a Check whose deadline (Envoy's ext_authz timeout) is
// shorter than the delay still gets its 403 in time; with --tarpit-max-held
// held already, the next deny is not held; /metrics counts all of it.
func TestTarpit(t *testing.T) {
	const delay = 2 * time.Second
	svc := flowlocktest.Start(t, authz(), "--admin-token", adminToken,
		"--quarantine-action", "tarpit", "--tarpit-delay", delay.String(), "--tarpit-max-held", "1")
	authc, health := clients(t, svc)
	waitServing(t, health)
	const bot, calm = "198.51.100.66", "198.51.100.67"
	if code, body := svc.API(t, "POST", "/api/v1/quarantine", adminToken, `{"identity":"`+bot+`","ttl":"1h"}`); code != 200 && code != 201 {
		t.Fatalf("ban = %d %s", code, body)
	}
	counts := func() string {
		_, metrics := svc.API(t, "GET", "/metrics", "", "")
		var out []string
		for _, line := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(line, "flowlock_authz_tarpit_total{") {
				out = append(out, line)
			}
		}
		return strings.Join(out, "; ")
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

	if resp, took := timed(bot, 10*time.Second); resp.GetDeniedResponse().GetStatus().GetCode() != 403 || took < delay {
		t.Errorf("quarantined: %v after %v; want a 403 held for %v", resp.GetStatus(), took, delay)
	}
	if resp, took := timed(calm, 10*time.Second); resp.GetOkResponse() == nil || took >= delay {
		t.Errorf("calm: %v after %v; want an allow at once", resp.GetStatus(), took)
	}
	// Envoy's timeout travels as the Check's deadline: the hold ends a
	// fifth of it early, and the 403 arrives in time.
	if resp, _ := timed(bot, time.Second); resp.GetDeniedResponse() == nil {
		t.Errorf("quarantined with a 1s deadline: %v, want the 403", resp.GetStatus())
	}
	if got, want := counts(), `flowlock_authz_tarpit_total{result="held"} 2; flowlock_authz_tarpit_total{result="over_cap"} 0`; got != want {
		t.Errorf("tarpit counts = %s, want %s", got, want)
	}

	// Two at once with room for one: one is held, the other is not.
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() { timed(bot, 10*time.Second) })
	}
	wg.Wait()
	if got, want := counts(), `flowlock_authz_tarpit_total{result="held"} 3; flowlock_authz_tarpit_total{result="over_cap"} 1`; got != want {
		t.Errorf("tarpit counts = %s, want %s", got, want)
	}
}
