package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/flowlock/flowlock/internal/replay"
)

// testdata is where internal/replay keeps its traces and access-log
// samples (made by flowlock-sim trace; see its README).
const testdata = "../../internal/replay/testdata/"

// runReplay runs "flowlock-authz replay args..." in-process with env as the
// environment and returns stdout, stderr and the error. Without a --format
// it asks for jsonl-full, which decodeResults reads whole.
func runReplay(t *testing.T, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--format") }) {
		args = append([]string{"--format", "jsonl-full"}, args...)
	}
	var out, errOut bytes.Buffer
	getenv := func(k string) string { return env[k] }
	err := run(context.Background(), append([]string{"replay"}, args...), getenv, &out, &errOut)
	return out.String(), errOut.String(), err
}

// decodeResults parses replay's JSON Lines output strictly.
func decodeResults(t *testing.T, s string) map[string]replay.Result {
	t.Helper()
	got := map[string]replay.Result{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		var r replay.Result
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%v: %s", err, sc.Text())
		}
		got[r.Identity] = r
	}
	return got
}

func TestReplaySimulatedTraces(t *testing.T) {
	out, errOut, err := runReplay(t, nil, testdata+"fixed-2s.jsonl", testdata+"human-spa.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	got := decodeResults(t, out)
	bot, human := got["10.0.0.1"], got["10.0.1.1"]
	if !bot.Quarantined || bot.FirstQuarantineRequest < 10 || bot.FirstQuarantineRequest > 25 ||
		bot.FirstQuarantineTS == nil || bot.Label != "bot" || bot.Scenario != "fixed-2s" || bot.Reason != "periodic" {
		t.Errorf("bot = %+v", bot)
	}
	if human.Quarantined || human.FirstQuarantineRequest != 0 || human.FirstQuarantineTS != nil ||
		human.Label != "human" || human.Scenario != "human-spa" {
		t.Errorf("human = %+v", human)
	}
	// The exact keys of DESIGN.md §3, null when nothing was denied.
	for _, key := range []string{`"identity":`, `"requests":`, `"quarantined":`, `"first_quarantine_request":`,
		`"first_quarantine_ts":null`, `"max_risk":`, `"reason":`, `"label":"human"`, `"scenario":"human-spa"`} {
		if !strings.Contains(out, key) {
			t.Errorf("output lacks %s", key)
		}
	}
	for _, want := range []string{
		"sorted by ts", // the two files interleave in time
		"replay: 538 records, 2 identities (1 quarantined), 0 malformed lines skipped, 0 records without identity",
		"replay: by label: bot 1 of 1 quarantined; human 0 of 1 quarantined",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// TestReplayJSONLFields: --format jsonl, the default, writes exactly the
// fields DESIGN.md §3 lists, in its order.
func TestReplayJSONLFields(t *testing.T) {
	out, _, err := runReplay(t, nil, "--format=jsonl", testdata+"fixed-2s.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var line map[string]json.RawMessage
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &line); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := []string{"identity", "requests", "quarantined", "first_quarantine_request", "first_quarantine_ts", "max_risk", "reason"}
	got := slices.Sorted(maps.Keys(line))
	if !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Errorf("keys = %v, want exactly %v", got, want)
	}
	if !strings.HasPrefix(out, `{"identity":"10.0.0.1","requests":150,"quarantined":true,"first_quarantine_request":`) {
		t.Errorf("line = %s", out)
	}
	// And it is the default.
	def, _, err := runReplayExact(t, testdata+"fixed-2s.jsonl")
	if err != nil || def != out {
		t.Errorf("default output differs from --format jsonl (%v):\n%s\n%s", err, def, out)
	}
}

// runReplayExact runs replay with args exactly as given.
func runReplayExact(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), append([]string{"replay"}, args...), func(string) string { return "" }, &out, &errOut)
	return out.String(), errOut.String(), err
}

func TestReplayStdinAndTable(t *testing.T) {
	data, err := os.ReadFile(testdata + "fixed-2s.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	old := replayStdin
	replayStdin = bytes.NewReader(data)
	t.Cleanup(func() { replayStdin = old })

	out, errOut, err := runReplay(t, nil, "--format", "table", "-")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "IDENTITY") {
		t.Fatalf("table:\n%s", out)
	}
	f := strings.Fields(lines[1])
	if f[0] != "10.0.0.1" || f[1] != "150" || f[2] != "true" || f[8] != "periodic" || f[10] != "bot" || f[11] != "fixed-2s" {
		t.Errorf("row %q", lines[1])
	}
	if strings.Contains(errOut, "sorted") {
		t.Errorf("a sorted trace was reported unsorted: %s", errOut)
	}
}

func TestReplayMalformedAndUnsorted(t *testing.T) {
	out, errOut, err := runReplay(t, nil, testdata+"malformed.jsonl", testdata+"unsorted.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"4", "6", "7", "8", "10"} {
		if !strings.Contains(errOut, "malformed.jsonl:"+line+": ") {
			t.Errorf("stderr does not report line %s:\n%s", line, errOut)
		}
	}
	for _, want := range []string{"5 malformed lines skipped", "sorted by ts", "by label: bot 1 of 1 quarantined"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	got := decodeResults(t, out)
	if got["192.0.2.1"].Requests != 3 || !got["10.0.2.1"].Quarantined {
		t.Errorf("results: %+v", got)
	}
}

func TestReplayAccessLogs(t *testing.T) {
	out, errOut, err := runReplay(t, nil, testdata+"envoy.log", testdata+"nginx.log")
	if err != nil {
		t.Fatal(err)
	}
	got := decodeResults(t, out)
	if !got["203.0.113.7"].Quarantined || !got["203.0.113.9"].Quarantined || got["198.51.100.23"].Quarantined {
		t.Errorf("results: %+v", got)
	}
	if n := strings.Count(errOut, "whole-second timestamps"); n != 1 {
		t.Errorf("nginx warning printed %d times, want once:\n%s", n, errOut)
	}
	if !strings.Contains(errOut, "envoy.log:50: ") || !strings.Contains(errOut, "nginx.log:30: ") {
		t.Errorf("malformed lines not reported:\n%s", errOut)
	}

	// Forcing the wrong format makes every line malformed.
	_, errOut, err = runReplay(t, nil, "--input-format", "jsonl", testdata+"envoy.log")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "187 malformed lines skipped") || !strings.Contains(errOut, "only their number") {
		t.Errorf("stderr:\n%.600s", errOut)
	}
}

func TestReplayServiceFlags(t *testing.T) {
	// Service flags, mixed with the paths, and the environment apply as in
	// serve: the identity header, trusted proxies, a deny list, shadow mode.
	out, _, err := runReplay(t, map[string]string{"FLOWLOCK_MODE": "shadow"},
		testdata+"malformed.jsonl", "--identity-header", "x-api-key", "--deny=192.0.2.0/24", "--demo", testdata+"nginx.log",
		"--trusted-proxies", "10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	got := decodeResults(t, out)
	if got["k1"].Requests != 1 {
		t.Errorf("identity header not used: %v", keysOf(got))
	}
	if r := got["192.0.2.1"]; !r.Quarantined || r.Reason != "denylist" {
		t.Errorf("deny list not used: %+v", r)
	}
	if got["192.0.2.77"].Requests != 2 {
		t.Errorf("trusted proxies not used: %v", keysOf(got))
	}

	// A risk threshold of 100 with 20 confirmations still catches the
	// fixed bot, later.
	out, _, err = runReplay(t, nil, "--risk-threshold", "100", "--confirm=20", testdata+"fixed-2s.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeResults(t, out)["10.0.0.1"]; r.FirstQuarantineRequest < 30 {
		t.Errorf("--confirm 20: first quarantined at request %d", r.FirstQuarantineRequest)
	}

	// The volume limit counts separately from quarantine: one request per
	// 10 s with a burst of 1 limits most of the human's bursts.
	out, _, err = runReplay(t, nil, "--volume-rate", "0.1", "--volume-burst", "1", testdata+"human-spa.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeResults(t, out)["10.0.1.1"]; r.Limited < 100 || r.Quarantined || r.Denied != 0 {
		t.Errorf("volume limit: %+v", r)
	}
}

func keysOf(m map[string]replay.Result) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestReplayErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no TRACE given"},
		{[]string{"--format", "csv", "x"}, `--format "csv"`},
		{[]string{"--input-format", "apache", "x"}, `--input-format "apache"`},
		{[]string{"x", "--format"}, "--format needs a value"},
		{[]string{"--risk-treshold", "90", "x"}, "did you mean --risk-threshold"},
		{[]string{"--risk-threshold", "900", "x"}, "--risk-threshold"},
		{[]string{testdata + "missing.jsonl"}, "missing.jsonl"},
	} {
		_, _, err := runReplay(t, nil, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
	_, errOut, err := runReplay(t, nil, "-h")
	if !errors.Is(err, flag.ErrHelp) || !strings.Contains(errOut, "--input-format") || !strings.Contains(errOut, "--exclude-path") {
		t.Errorf("-h: err %v, stderr %.300s", err, errOut)
	}
}

func TestSplitReplayArgs(t *testing.T) {
	o, cfg, err := splitReplayArgs([]string{"a.log", "--demo", "b.log", "-xff-trusted-hops", "2", "--format=table", "-", "--", "--odd-name"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a.log", "b.log", "-", "--odd-name"}; !slices.Equal(o.paths, want) {
		t.Errorf("paths = %q, want %q", o.paths, want)
	}
	if want := []string{"--demo", "-xff-trusted-hops", "2"}; !slices.Equal(cfg, want) {
		t.Errorf("config args = %q, want %q", cfg, want)
	}
	if o.format != "table" {
		t.Errorf("format = %q", o.format)
	}
}
