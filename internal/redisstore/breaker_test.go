package redisstore

import (
	"errors"
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	errDown := errors.New("down")
	t0 := time.Unix(1_796_000_000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }

	type step struct {
		at        time.Duration
		call      bool  // ask Allow (and report result if allowed)
		result    error // what the call returns
		wantAllow bool
		wantState BreakerState
	}
	tests := []struct {
		name     string
		failures int
		cooldown time.Duration
		steps    []step
	}{
		{"stays closed while calls succeed", 0, 0, []step{
			{0, true, nil, true, BreakerClosed},
			{1, true, errDown, true, BreakerClosed},
			{2, true, errDown, true, BreakerClosed},
			{3, true, nil, true, BreakerClosed}, // a success resets the count
			{4, true, errDown, true, BreakerClosed},
			{5, true, errDown, true, BreakerClosed},
		}},
		{"opens after Failures in a row and refuses until the cooldown", 2, time.Second, []step{
			{0, true, errDown, true, BreakerClosed},
			{time.Millisecond, true, errDown, true, BreakerOpen},
			{500 * time.Millisecond, true, nil, false, BreakerOpen},
			{1000*time.Millisecond - 1, true, nil, false, BreakerOpen},
		}},
		{"half-open lets one probe through; success closes", 1, time.Second, []step{
			{0, true, errDown, true, BreakerOpen},
			{time.Second, true, nil, true, BreakerClosed},
			{time.Second + 1, true, nil, true, BreakerClosed},
		}},
		{"a failed probe reopens for another cooldown", 1, time.Second, []step{
			{0, true, errDown, true, BreakerOpen},
			{time.Second, true, errDown, true, BreakerOpen},
			{1500 * time.Millisecond, true, nil, false, BreakerOpen},
			{2 * time.Second, true, nil, true, BreakerClosed},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &Breaker{Failures: tc.failures, Cooldown: tc.cooldown}
			for i, s := range tc.steps {
				allowed := b.Allow(at(s.at))
				if allowed != s.wantAllow {
					t.Fatalf("step %d at %v: Allow = %t, want %t", i, s.at, allowed, s.wantAllow)
				}
				if allowed {
					b.Done(s.result, at(s.at))
				}
				if got := b.State(); got != s.wantState {
					t.Fatalf("step %d at %v: state %v, want %v", i, s.at, got, s.wantState)
				}
			}
		})
	}
}

func TestBreakerHalfOpenAllowsOneProbeAtATime(t *testing.T) {
	b := &Breaker{Failures: 1, Cooldown: time.Second}
	t0 := time.Unix(1_796_000_000, 0)
	b.Allow(t0)
	b.Done(errors.New("down"), t0)
	if !b.Allow(t0.Add(time.Second)) {
		t.Fatal("no probe after the cooldown")
	}
	if got := b.State(); got != BreakerHalfOpen {
		t.Fatalf("state %v, want half-open", got)
	}
	for i := range 3 {
		if b.Allow(t0.Add(time.Second + time.Duration(i))) {
			t.Fatal("a second call went through while the probe is out")
		}
	}
	// A probe never reported (its caller lost it) does not wedge the
	// breaker: after another cooldown there is another probe.
	if !b.Allow(t0.Add(2 * time.Second)) {
		t.Fatal("no new probe a cooldown after a lost one")
	}
}
