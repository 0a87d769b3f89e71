// Package demo runs what `make demo` and `make attack` run, the scripts in
// scripts/ with the built binaries, on free loopback ports, and checks the
// brief's two demonstrations: a person refreshing /data by hand from
// 127.0.0.1 is allowed throughout with a low score, and the attacker, at
// its own address, is quarantined within seconds, gets 403 with
// Retry-After and the JSON body, shows in the dashboard's quarantine and
// heals when the TTL ends.
package demo

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/flowlock/flowlock/test/flowlocktest"
)

var repoRoot string

func TestMain(m *testing.M) {
	flag.Parse()
	root, err := flowlocktest.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	repoRoot = root
	if testing.Short() {
		os.Exit(m.Run())
	}
	os.Exit(flowlocktest.Main(m, "flowlock-authz", "sample-api", "flowlock-sim"))
}

// The demo's quarantine TTL and attack length here: shorter than make
// demo's 30 s and 20 s, so the test sees the quarantine heal within half a
// minute. The attack ends before the TTL does, as make demo's does, so the
// attacker is not caught again on release.
const (
	ttl            = 8 * time.Second
	attackDuration = 12 * time.Second
)

// TestDemo runs the demo twice: with the attacker at 127.0.0.2 (Linux, or
// macOS with a loopback alias) and at ::1 (macOS's fallback, which Linux
// can run too).
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: runs scripts/demo.sh and scripts/attack.sh with the built binaries (run without -short; CI does)")
	}
	for _, tc := range []struct {
		attacker string // DEMO_ATTACKER_IP
		identity string // as Flow Lock names it
	}{
		{"127.0.0.2", "127.0.0.2"},
		{"::1", "::/64"}, // IPv6 clients are grouped by --ipv6-prefix 64
	} {
		t.Run(tc.attacker, func(t *testing.T) {
			t.Parallel()
			canSendFrom(t, tc.attacker)
			runDemo(t, tc.attacker, tc.identity)
		})
	}
}

func runDemo(t *testing.T, attackerIP, attackerID string) {
	env := []string{
		"DEMO_BIN=" + filepath.Dir(flowlocktest.Bin("flowlock-authz")),
		"DEMO_API=127.0.0.1:" + flowlocktest.FreePort(t),
		"DEMO_HTTP=127.0.0.1:" + flowlocktest.FreePort(t),
		"DEMO_GRPC=127.0.0.1:" + flowlocktest.FreePort(t),
		"DEMO_TTL=" + ttl.String(),
		"DEMO_ATTACKER_IP=" + attackerIP,
		"DEMO_ATTACK_DURATION=" + attackDuration.String(),
	}
	api := "http://" + strings.TrimPrefix(env[1], "DEMO_API=")
	dashboard := "http://" + strings.TrimPrefix(env[2], "DEMO_HTTP=")

	demo := script(t, "demo.sh", env)
	p := flowlocktest.StartProcess(t, demo)
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(p.Logs(), "make attack") {
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("make demo did not print its instructions within 30 s:\n%s", p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, want := range []string{api + "/data", dashboard + "/status", "--source-ip " + attackerIP} {
		if !strings.Contains(p.Logs(), want) {
			t.Errorf("make demo's instructions do not mention %q:\n%s", want, p.Logs())
		}
	}
	for _, path := range []string{"/", "/status"} {
		if code, body := get(t, flowlocktest.HTTPClient, dashboard+path); code != 200 || !strings.Contains(body, "<html") {
			t.Errorf("dashboard %s: %d, want the page", path, code)
		}
	}

	// The person: 127.0.0.1 refreshing by hand, irregular gaps around a
	// second, for as long as the attack lasts and a little more.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	humanDone := make(chan []string, 1)
	go func() { humanDone <- person(ctx, api+"/data", attackDuration+3*time.Second) }()

	// The attacker, as make attack runs it.
	attack := flowlocktest.StartProcess(t, script(t, "attack.sh", env))
	select {
	case <-attack.Done():
	case <-time.After(attackDuration + time.Minute): // the build, if any, and the attack
		attack.Stop()
		t.Fatalf("make attack still running after %v:\n%s", attackDuration+time.Minute, attack.Logs())
	}
	out := attack.Logs()
	if !attack.Cmd.ProcessState.Success() {
		t.Fatalf("make attack: %v\n%s", attack.Cmd.ProcessState, out)
	}
	denied := regexp.MustCompile(`(?m)^\s*([0-9.]+)s \S+\s+fixed-0.5s\s+GET\s+\S+\s+DENIED 403 retry-after=([0-9]+) reason=(\w+)`).FindAllStringSubmatch(out, -1)
	if len(denied) == 0 {
		t.Fatalf("make attack: never denied with 403, Retry-After and a JSON reason:\n%s", out)
	}
	first, _ := strconv.ParseFloat(denied[0][1], 64)
	t.Logf("attacker %s denied first after %.1fs (retry-after=%s reason=%s), %d denials",
		attackerIP, first, denied[0][2], denied[0][3], len(denied))
	if first > 10 {
		t.Errorf("attacker first denied after %.1fs, want within 10 s", first)
	}
	if !strings.Contains(string(out), " "+attackerIP+" ") && !strings.Contains(string(out), " "+attackerIP+"\n") {
		t.Errorf("make attack did not send from %s:\n%s", attackerIP, out)
	}

	// The dashboard's API, while the attacker is in quarantine.
	var q struct {
		Quarantine []struct {
			Identity string    `json:"identity"`
			Until    time.Time `json:"until"`
		} `json:"quarantine"`
	}
	decode(t, dashboard+"/api/v1/quarantine", &q)
	if len(q.Quarantine) != 1 || q.Quarantine[0].Identity != attackerID {
		t.Fatalf("quarantine %+v, want the attacker %s alone", q.Quarantine, attackerID)
	}
	var ids struct {
		Identities []struct {
			Identity    string `json:"identity"`
			Score       int    `json:"score"`
			Requests    int    `json:"requests"`
			Quarantined bool   `json:"quarantined"`
		} `json:"identities"`
	}
	decode(t, dashboard+"/api/v1/identities", &ids)
	seen := map[string]bool{}
	for _, id := range ids.Identities {
		seen[id.Identity] = true
		switch id.Identity {
		case "127.0.0.1":
			t.Logf("person: score %d after %d requests", id.Score, id.Requests)
			if id.Quarantined || id.Score >= lowScore {
				t.Errorf("person 127.0.0.1: score %d, quarantined %v; want a low score", id.Score, id.Quarantined)
			}
		case attackerID:
			if !id.Quarantined {
				t.Errorf("attacker %s listed as not quarantined", attackerID)
			}
		}
	}
	if !seen["127.0.0.1"] || !seen[attackerID] {
		t.Errorf("identities %+v, want the person 127.0.0.1 and the attacker %s", ids.Identities, attackerID)
	}

	// The dashboard in Chromium, at /status, shows both: the person in the
	// threat radar, the attacker in the Quarantine Zone.
	t.Run("dashboard in Chromium", func(t *testing.T) { seeInBrowser(t, dashboard+"/status", attackerID) })

	if errs := <-humanDone; len(errs) > 0 {
		t.Errorf("the person was not served throughout: %v", errs)
	}

	// The quarantine heals when the TTL ends.
	healBy := q.Quarantine[0].Until.Add(5 * time.Second)
	for {
		decode(t, dashboard+"/api/v1/quarantine", &q)
		if len(q.Quarantine) == 0 {
			break
		}
		if time.Now().After(healBy) {
			t.Fatalf("quarantine %+v still there 5 s after its end", q.Quarantine)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// lowScore is where Flow Lock's watch band begins (risk's default
// challenge threshold): a person stays below it.
const lowScore = 60

// person GETs url from 127.0.0.1 at irregular gaps, as a hand on the
// refresh button makes them (log-normal, median 1 s, log-sd 1, at most
// 4 s), for d, and returns what went wrong: any answer that is not the
// API's 200 with a low Flow Lock score.
func person(ctx context.Context, url string, d time.Duration) []string {
	var errs []string
	rng := rand.New(rand.NewPCG(3, 5))
	c := &http.Client{Timeout: 5 * time.Second}
	end := time.Now().Add(d)
	for n := 1; time.Now().Before(end); n++ {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := c.Do(req)
		if err != nil {
			return append(errs, err.Error())
		}
		var body struct {
			Risk      string `json:"flowlock_risk"`
			Unchecked bool   `json:"unchecked"`
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || json.Unmarshal(b, &body) != nil || body.Unchecked {
			errs = append(errs, fmt.Sprintf("request %d: %d %s", n, resp.StatusCode, b))
		} else if risk, err := strconv.Atoi(body.Risk); err != nil || risk >= lowScore {
			errs = append(errs, fmt.Sprintf("request %d: flowlock_risk %q, want a score below %d", n, body.Risk, lowScore))
		}
		gap := time.Duration(1000 * math.Exp(rng.NormFloat64()) * float64(time.Millisecond))
		select {
		case <-ctx.Done():
			return append(errs, ctx.Err().Error())
		case <-time.After(min(gap, 4*time.Second)):
		}
	}
	return errs
}

// canSendFrom skips t when this host cannot send from addr (::1 where
// IPv6 is off), unless CI is set: CI's machines can, so there it fails.
func canSendFrom(t *testing.T, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(addr, "0"))
	if err == nil {
		l.Close()
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("cannot send from %s (%v), and CI is set", addr, err)
	}
	t.Skipf("this host cannot send from %s (%v): the demo's attacker uses it where 127.0.0.2 is missing", addr, err)
}

// script returns the command that runs scripts/name with env added, under
// flowlocktest.DefaultLimits, which the processes it starts inherit.
func script(t *testing.T, name string, env []string) *exec.Cmd {
	t.Helper()
	cmd := flowlocktest.LimitedCommand(flowlocktest.DefaultLimits, filepath.Join(repoRoot, "scripts", name))
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), env...)
	return cmd
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

func decode(t *testing.T, url string, v any) {
	t.Helper()
	code, body := get(t, flowlocktest.HTTPClient, url)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v\n%s", url, err, body)
	}
}

// seeInBrowser opens page in headless Chromium and waits until the page
// lists the person 127.0.0.1 among the identities and attackerID in the
// quarantine zone.
func seeInBrowser(t *testing.T, page, attackerID string) {
	t.Helper()
	ctx := flowlocktest.Browser(t, flowlocktest.Chromium(t), 20*time.Second)
	both := fmt.Sprintf(`document.querySelector('[data-testid="quarantine-row"][data-identity=%q]') !== null &&
		document.querySelector('[data-testid="risk-row"][data-identity="127.0.0.1"]') !== null`, attackerID)
	err := chromedp.Do(ctx, chromedp.Navigate(page))
	for err == nil {
		var shown bool
		if shown, err = chromedp.Run(ctx, chromedp.Evaluate[bool](both)); shown {
			return
		}
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	t.Errorf("the dashboard at %s never showed the person 127.0.0.1 and the attacker %s in quarantine: %v", page, attackerID, err)
}
