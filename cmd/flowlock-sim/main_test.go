package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/traffic"
)

// runArgs runs the command in-process and returns stdout, stderr and the
// error.
func runArgs(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return out.String(), errOut.String(), err
}

// decodeTrace parses a JSON Lines trace strictly.
func decodeTrace(t *testing.T, s string) []traceRecord {
	t.Helper()
	var recs []traceRecord
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(nil, 1<<20)
	for line := 1; sc.Scan(); line++ {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var r traceRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %d: %v: %s", line, err, sc.Text())
		}
		recs = append(recs, r)
	}
	return recs
}

func TestScenariosTable(t *testing.T) {
	out, _, err := runArgs(t, "scenarios")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	all := traffic.Scenarios()
	if len(lines) != len(all)+1 {
		t.Fatalf("%d lines, want a header and %d scenarios", len(lines), len(all))
	}
	for i, s := range all {
		f := strings.Fields(lines[i+1])
		if len(f) < 6 || f[0] != s.ID || f[1] != s.Name || f[2] != string(s.Label) {
			t.Errorf("line %d = %q, want %s %s %s ...", i+2, lines[i+1], s.ID, s.Name, s.Label)
		}
	}
}

func TestScenariosJSON(t *testing.T) {
	out, _, err := runArgs(t, "scenarios", "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	all := traffic.Scenarios()
	if len(lines) != len(all) {
		t.Fatalf("%d lines, want %d", len(lines), len(all))
	}
	for i, line := range lines {
		var r scenarioRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %d: %v", i+1, err)
		}
		s := all[i]
		if r.ID != s.ID || r.Name != s.Name || r.Label != string(s.Label) || r.Clients != s.Clients ||
			r.HorizonSeconds != s.Horizon.Seconds() || r.Params != s.Params {
			t.Errorf("line %d = %+v, want scenario %s", i+1, r, s.ID)
		}
	}
	if !strings.Contains(out, `"excluded_paths":["/api/poll"]`) {
		t.Error("H6's excluded path is missing")
	}
}

func TestTrace(t *testing.T) {
	out, _, err := runArgs(t, "trace", "--scenario", "fixed-2s", "--seed", "3")
	if err != nil {
		t.Fatal(err)
	}
	recs := decodeTrace(t, out)
	// 30 minutes at one request every 2 s.
	if len(recs) != 900 {
		t.Errorf("%d requests, want 900", len(recs))
	}
	start := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	var prev time.Time
	for i, r := range recs {
		ts, err := time.Parse(time.RFC3339Nano, r.TS)
		if err != nil {
			t.Fatalf("line %d: ts %q: %v", i+1, r.TS, err)
		}
		if len(r.TS) != len("2026-01-05T09:00:00.000000Z") {
			t.Fatalf("line %d: ts %q is not RFC 3339 with microseconds", i+1, r.TS)
		}
		if ts.Before(prev) || ts.Before(start) || !ts.Before(start.Add(30*time.Minute)) {
			t.Fatalf("line %d: ts %v out of order or outside the horizon", i+1, ts)
		}
		prev = ts
		if r.IP != "10.0.0.1" || r.Label != "bot" || r.Scenario != "fixed-2s" || r.Method != "GET" ||
			!strings.HasPrefix(r.Path, "/api/") || r.Headers.UserAgent == "" {
			t.Fatalf("line %d: %+v", i+1, r)
		}
	}

	again, _, _ := runArgs(t, "trace", "--scenario", "B1-2s", "--seed", "3")
	if again != out {
		t.Error("the same scenario (by id) and seed gave a different trace")
	}
	other, _, _ := runArgs(t, "trace", "--scenario", "fixed-2s", "--seed", "4")
	if other == out {
		t.Error("seeds 3 and 4 gave the same trace")
	}
}

func TestTraceMatchesStream(t *testing.T) {
	out, _, err := runArgs(t, "trace", "--scenario", "H1", "--seed", "9", "--start", "2026-03-01T12:00:00Z")
	if err != nil {
		t.Fatal(err)
	}
	recs := decodeTrace(t, out)
	s, _ := traffic.Lookup("H1")
	st := s.Stream(9, time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	for i, r := range recs {
		want, ok := st.Next()
		if !ok {
			t.Fatalf("trace has %d requests, the stream fewer", len(recs))
		}
		if r.TS != want.TS.Format(tsLayout) || r.Path != want.Path || r.Headers.UserAgent != want.UserAgent {
			t.Fatalf("line %d = %+v, want %+v", i+1, r, want)
		}
	}
	if _, ok := st.Next(); ok {
		t.Error("the stream has more requests than the trace")
	}
}

func TestTraceClients(t *testing.T) {
	for _, tc := range []struct {
		ipv6   bool
		prefix string
	}{{false, "10.0."}, {true, "2001:db8:0:"}} {
		args := []string{"trace", "--scenario", "distributed", "--seed", "1", "--clients", "50"}
		if tc.ipv6 {
			args = append(args, "--ipv6")
		}
		out, _, err := runArgs(t, args...)
		if err != nil {
			t.Fatal(err)
		}
		recs := decodeTrace(t, out)
		perIP := map[string]int{}
		prev := ""
		for i, r := range recs {
			if r.TS < prev { // same layout and zone: string order is time order
				t.Fatalf("line %d: %s after %s", i+1, r.TS, prev)
			}
			prev = r.TS
			if !strings.HasPrefix(r.IP, tc.prefix) || r.Label != "out_of_scope" {
				t.Fatalf("line %d: %+v", i+1, r)
			}
			perIP[r.IP]++
		}
		if len(perIP) < 45 { // a B9 stream may, rarely, be empty
			t.Errorf("ipv6=%v: %d distinct addresses, want ≈ 50", tc.ipv6, len(perIP))
		}
		if mean := float64(len(recs)) / 50; mean < 4 || mean > 8 {
			t.Errorf("ipv6=%v: %.1f requests per address, want ≈ 6", tc.ipv6, mean)
		}
	}
}

func TestStreamAddr(t *testing.T) {
	tests := []struct {
		k    int
		ipv6 bool
		want string
	}{
		{0, false, "10.0.0.1"},
		{254, false, "10.0.0.255"},
		{255, false, "10.0.1.0"},
		{99_999, false, "10.1.134.160"},
		{0, true, "2001:db8:0:1::1"},
		{65_535, true, "2001:db8:1:0::1"},
	}
	for _, tc := range tests {
		if got := streamAddr(tc.k, tc.ipv6); got != netip.MustParseAddr(tc.want) {
			t.Errorf("streamAddr(%d, %v) = %v, want %v", tc.k, tc.ipv6, got, tc.want)
		}
	}
	// Every IPv6 stream is its own /64.
	seen := map[netip.Prefix]bool{}
	for k := range 1000 {
		p, _ := streamAddr(k, true).Prefix(64)
		if seen[p] {
			t.Fatalf("stream %d shares %v", k, p)
		}
		seen[p] = true
	}
}

func TestTraceOptions(t *testing.T) {
	// --duration overrides the horizon; --raw keeps sub-millisecond times.
	out, _, err := runArgs(t, "trace", "--scenario", "scraper", "--duration", "10s", "--raw")
	if err != nil {
		t.Fatal(err)
	}
	recs := decodeTrace(t, out)
	if len(recs) < 30 || len(recs) > 90 {
		t.Errorf("scraper over 10 s: %d requests", len(recs))
	}
	subMilli := false
	for _, r := range recs {
		if !strings.HasSuffix(r.TS, "000Z") {
			subMilli = true
		}
	}
	if !subMilli {
		t.Error("--raw timestamps are all on whole milliseconds")
	}

	// --max-requests bounds the output and fails loudly.
	out, _, err = runArgs(t, "trace", "--scenario", "fixed-0.5s", "--max-requests", "10")
	if err == nil || !strings.Contains(err.Error(), "--max-requests") {
		t.Errorf("err = %v, want one naming --max-requests", err)
	}
	if n := len(decodeTrace(t, out)); n != 10 {
		t.Errorf("%d lines written, want 10", n)
	}
}

func TestTraceCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"trace", "--scenario", "H9"}, &out, &bytes.Buffer{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		args  []string
		want  string // in the error
		usage bool
	}{
		{nil, "missing command", true},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`, true},
		{[]string{"trace"}, "--scenario is required", true},
		{[]string{"trace", "--scenario", "nope"}, `--scenario "nope": unknown scenario; one of: human-spa (H1)`, true},
		{[]string{"trace", "--scenario", "H1", "--duration", "-1s"}, "--duration", true},
		{[]string{"trace", "--scenario", "H1", "--duration", "1000h"}, "--duration", true},
		{[]string{"trace", "--scenario", "H1", "--clients", "0"}, "--clients", true},
		{[]string{"trace", "--scenario", "H1", "--start", "yesterday"}, "--start", true},
		{[]string{"trace", "--scenario", "H1", "--seed", "x"}, "-seed", true},
		{[]string{"trace", "--scenario", "H1", "extra"}, `unexpected argument "extra"`, true},
		{[]string{"scenarios", "--format", "xml"}, "--format", true},
		{[]string{"eval", "--seed-set", "x"}, `--seed-set "x"`, true},
		{[]string{"grpc"}, "--target is required", true},
		{[]string{"http", "--target", "http://x"}, "--scenario is required", true},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			_, _, err := runArgs(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if got := errors.As(err, new(usageError)); got != tc.usage {
				t.Errorf("usage error = %v, want %v", got, tc.usage)
			}
		})
	}
	// The unknown-scenario error lists every scenario.
	_, _, err := runArgs(t, "trace", "--scenario", "nope")
	for _, s := range traffic.Scenarios() {
		if !strings.Contains(err.Error(), s.Name) {
			t.Errorf("unknown-scenario error does not list %s", s.Name)
		}
	}
}

func TestHelp(t *testing.T) {
	out, _, err := runArgs(t, "help")
	if err != nil || !strings.Contains(out, "trace") || !strings.Contains(out, "grpc") || strings.Contains(out, "not implemented yet") {
		t.Errorf("help: err %v, output %q", err, out)
	}
	if _, errOut, err := runArgs(t, "trace", "-h"); err != nil || !strings.Contains(errOut, "-scenario") {
		t.Errorf("trace -h: err %v, stderr %q", err, errOut)
	}
}

func TestTraceFirstAddr(t *testing.T) {
	for _, tc := range []struct {
		first string
		want  []string
	}{
		{"10.1.0.254", []string{"10.1.0.254", "10.1.0.255", "10.1.1.0"}},
		{"2001:db8::7", []string{"2001:db8::7", "2001:db8:0:1::7", "2001:db8:0:2::7"}},
	} {
		out, _, err := runArgs(t, "trace", "--scenario", "fixed-2s", "--clients", "3", "--duration", "10s", "--first-addr", tc.first)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, r := range decodeTrace(t, out) {
			seen[r.IP] = true
		}
		for _, a := range tc.want {
			if !seen[a] {
				t.Errorf("--first-addr %s: no requests from %s (got %v)", tc.first, a, seen)
			}
		}
		if len(seen) != len(tc.want) {
			t.Errorf("--first-addr %s: addresses %v", tc.first, seen)
		}
	}
	if _, _, err := runArgs(t, "trace", "--scenario", "H1", "--first-addr", "255.255.255.255", "--clients", "2"); err == nil {
		t.Error("overflowing --first-addr accepted")
	}
}
