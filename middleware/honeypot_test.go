package middleware_test

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/flowlock/flowlock/middleware"
	"github.com/flowlock/flowlock/test/flowlocktest"
)

const decoyBody = `{"decoy":"made up"}`

// TestHoneypot: under Flow Lock's --quarantine-action honeypot, a caught
// bot is served by Options.Honeypot and never again by the wrapped
// handler; without a decoy it is refused. Flow Lock's route header reaches
// neither.
func TestHoneypot(t *testing.T) {
	endToEnd(t)
	fl := flowlocktest.Start(t, flowlocktest.Bin("flowlock-authz"), "--quarantine-action", "honeypot")
	decoySawRoute := make(chan string, 100)
	decoy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		decoySawRoute <- r.Header.Get("X-Flowlock-Route")
		io.WriteString(w, decoyBody)
	})
	for _, tc := range []struct {
		name     string
		honeypot http.Handler
		src      string
		status   int
		body     string
	}{
		{"decoy", decoy, "127.0.0.40", http.StatusOK, decoyBody},
		{"no decoy", nil, "127.0.0.41", http.StatusForbidden, "Forbidden\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A long timeout: a Check that failed open on a loaded machine would
			// let the caught bot reach the wrapped handler.
			a, url := serve(t, fl.GRPCAddr, middleware.Options{Timeout: 10 * time.Second, Honeypot: tc.honeypot})
			bot := from(tc.src)
			caught, n := botUntilDenied(t, bot, url+"/data", map[string]string{"X-Test-Client": "bot"})
			if n > botLimit {
				t.Fatalf("fixed-interval bot not caught within %d requests", botLimit)
			}
			for _, r := range []response{caught, get(t, bot, url+"/admin", map[string]string{"X-Test-Client": "bot"})} {
				if r.status != tc.status || r.body != tc.body {
					t.Errorf("caught bot got %d %q, want %d %q", r.status, r.body, tc.status, tc.body)
				}
			}
			if got := len(a.requests("bot")); got != n-1 {
				t.Errorf("the wrapped handler saw %d bot requests, want the %d before the catch", got, n-1)
			}
		})
	}
	close(decoySawRoute)
	for v := range decoySawRoute {
		if v != "" {
			t.Errorf("the decoy got X-Flowlock-Route %q", v)
		}
	}
}
