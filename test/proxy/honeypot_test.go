package proxy

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// The secret the bot sends; the decoy must never show it.
const botSecret = "Bearer bot-secret-0123456789"

// TestHoneypotBehindProxies runs flowlock-authz with --quarantine-action
// honeypot behind nginx and HAProxy, each from its config in deploy/, with
// the real sample-api as the upstream and the real flowlock-honeypot, with
// docker-compose.yml's flags, as the decoy. A fixed-interval bot is caught and from then on gets 200s with
// the decoy's made-up JSON, never a 403; a human-like client gets
// sample-api's answers throughout; and Flow Lock's dashboard API lists
// what the bot asked the decoy for, under its address and without its
// secrets.
func TestHoneypotBehindProxies(t *testing.T) {
	endToEnd(t)
	for _, px := range []struct {
		name, bin string
		start     func(t *testing.T, bin, forwardAuth, upstream, decoy string) string
	}{
		{"nginx", "nginx", startNginxDecoy},
		{"haproxy", "haproxy", startHAProxyDecoy},
	} {
		t.Run(px.name, func(t *testing.T) {
			bin := tool(t, px.bin)
			api := startBinary(t, "sample-api", "--addr", "127.0.0.1:"+flowlocktest.FreePort(t))
			decoyAPI := "127.0.0.1:" + flowlocktest.FreePort(t)
			decoy := startBinary(t, "flowlock-honeypot", composeHoneypotArgs(t, "127.0.0.1:"+flowlocktest.FreePort(t), decoyAPI)...)
			fl := startFlowlock(t,
				"--forward-auth-addr", "127.0.0.1:0",
				"--trusted-proxies", "127.0.0.1/32",
				"--quarantine-action", "honeypot",
				"--honeypot-url", "http://"+decoyAPI)
			base := px.start(t, bin, fl.ForwardAuthAddr, api, decoy)
			honeypotBotAndHuman(t, fl, base)
		})
	}
}

// startBinary runs one of the binaries TestMain built with args whose
// first "--addr" value is its listen address, and waits for it.
func startBinary(t *testing.T, name string, args ...string) string {
	t.Helper()
	p := startProcess(t, t.TempDir(), flowlocktest.Bin(name), nil, args...)
	addr := args[1]
	waitListening(t, p, addr)
	return addr
}

// fromSampleAPI reports whether a 200 body is sample-api's /data: its
// fixed items, and the score Flow Lock sent it.
func fromSampleAPI(body string) bool {
	return strings.Contains(body, `"name":"anchor"`) && strings.Contains(body, `"flowlock_risk"`)
}

func honeypotBotAndHuman(t *testing.T, fl *flowlocktest.Service, base string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The human: log-normal gaps (median 100 ms), 20 requests, each
	// answered by sample-api.
	humanDone := make(chan []string, 1)
	go func() {
		var bad []string
		c := from(humanAddr)
		rng := rand.New(rand.NewPCG(3, 5))
		for range 20 {
			gap := time.Duration(100 * math.Exp(rng.NormFloat64()) * float64(time.Millisecond))
			select {
			case <-ctx.Done():
				humanDone <- append(bad, ctx.Err().Error())
				return
			case <-time.After(min(gap, time.Second)):
			}
			r, err := get(ctx, c, base+"/data", nil)
			if err != nil || r.status != http.StatusOK || !fromSampleAPI(r.body) {
				bad = append(bad, r.body+" "+errString(err))
			}
		}
		humanDone <- bad
	}()

	// The bot: one request every 75 ms. It is never refused: the requests
	// before the catch reach sample-api, every one after it the decoy.
	bot := from(botAddr)
	headers := map[string]string{"Authorization": botSecret}
	tick := time.NewTicker(75 * time.Millisecond)
	caught := 0
	for n := 1; n <= 60 && caught == 0; n++ {
		<-tick.C
		r, err := get(ctx, bot, base+"/data", headers)
		if err != nil {
			t.Fatalf("bot request %d: %v", n, err)
		}
		if r.status != http.StatusOK {
			t.Fatalf("bot request %d: %d %s; under honeypot a caught bot gets 200s", n, r.status, r.body)
		}
		if !fromSampleAPI(r.body) {
			checkDecoy(t, r)
			caught = n
		}
	}
	tick.Stop()
	if caught == 0 {
		t.Fatal("fixed-interval bot never routed to the decoy within 60 requests")
	}
	t.Logf("bot routed to the decoy from request %d", caught)

	// What a bot goes for once it thinks it is in.
	for _, path := range []string{"/admin", "/.env", "/api/users/42", "/data"} {
		r, err := get(ctx, bot, base+path, headers)
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("bot GET %s: %d %v", path, r.status, err)
		}
		checkDecoy(t, r)
	}
	if bad := <-humanDone; len(bad) > 0 {
		t.Errorf("human-like client did not get sample-api's answers: %v", bad)
	}

	// Flow Lock quarantined the bot, not the human, and its dashboard shows
	// what the bot went for, as the decoy recorded it.
	q := api(t, fl, "/api/v1/quarantine")
	if !strings.Contains(q, `"`+botAddr+`"`) || strings.Contains(q, `"`+humanAddr+`"`) {
		t.Errorf("quarantine = %s; want the bot %s only", q, botAddr)
	}
	body := api(t, fl, "/api/v1/honeypot")
	var view struct {
		TopPaths []struct {
			Path  string `json:"path"`
			Count int    `json:"count"`
		} `json:"top_paths"`
		Identities []struct {
			Identity string `json:"identity"`
			Requests int    `json:"requests"`
			TopPaths []struct {
				Path string `json:"path"`
			} `json:"top_paths"`
		} `json:"identities"`
	}
	if err := json.Unmarshal([]byte(body), &view); err != nil {
		t.Fatalf("/api/v1/honeypot: %v: %s", err, body)
	}
	if len(view.Identities) != 1 || view.Identities[0].Identity != botAddr || view.Identities[0].Requests != 5 {
		t.Fatalf("honeypot identities = %s; want the bot %s alone with its 5 requests", body, botAddr)
	}
	for _, want := range []string{"/admin", "/.env", "/api/users/42", "/data"} {
		if !strings.Contains(body, `"path":"`+want+`"`) {
			t.Errorf("the dashboard does not list the bot's %s: %s", want, body)
		}
	}
	if strings.Contains(body, "bot-secret") || strings.Contains(body, humanAddr) {
		t.Errorf("the honeypot view shows the bot's secret or the human: %s", body)
	}
}

// checkDecoy checks an answer that must come from the decoy: made-up JSON,
// not sample-api's, with nothing of Flow Lock in it.
func checkDecoy(t *testing.T, r response) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(r.body), &doc); err != nil || fromSampleAPI(r.body) {
		t.Fatalf("answer is not the decoy's JSON: %d %s", r.status, r.body)
	}
	for k := range r.header {
		if strings.HasPrefix(strings.ToLower(k), "x-flowlock") {
			t.Errorf("decoy answer carries %s: the bot could tell", k)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
