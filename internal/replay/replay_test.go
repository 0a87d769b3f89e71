package replay

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/config"
)

// readFiles reads test data files in order and returns their records and
// how many lines were bad.
func readFiles(t *testing.T, names ...string) ([]Record, int) {
	t.Helper()
	var recs []Record
	bad := 0
	for _, n := range names {
		r, b := readAll(t, NewReader(openTestdata(t, n), n, Auto))
		recs = append(recs, r...)
		bad += len(b)
	}
	return recs, bad
}

// byIdentity indexes results by identity.
func byIdentity(results []Result) map[string]Result {
	m := make(map[string]Result, len(results))
	for _, r := range results {
		m[r.Identity] = r
	}
	return m
}

func TestRunSimulatedTraces(t *testing.T) {
	// The bot file first, then the human file: the records interleave in
	// time, so Run has to sort them.
	recs, bad := readFiles(t, "fixed-2s.jsonl", "human-spa.jsonl")
	if bad != 0 {
		t.Fatalf("%d bad lines in simulated traces", bad)
	}
	results, sum, err := Run(context.Background(), recs, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records != 150+388 || sum.Identities != 2 || sum.NoIdentity != 0 || sum.OutOfOrder == 0 || sum.Quarantined != 1 {
		t.Errorf("summary = %+v", sum)
	}
	if !slices.IsSortedFunc(recs, func(a, b Record) int { return a.TS.Compare(b.TS) }) {
		t.Error("records not sorted")
	}
	got := byIdentity(results)

	bot := got["10.0.0.1"]
	if !bot.Quarantined || bot.Label != "bot" || bot.Scenario != "fixed-2s" || bot.Requests != 150 {
		t.Fatalf("bot = %+v", bot)
	}
	// The engine needs 16 intervals and 3 confirmations: about 17-20 requests.
	if bot.FirstQuarantineRequest < 10 || bot.FirstQuarantineRequest > 25 {
		t.Errorf("bot first quarantined at request %d, want about 17", bot.FirstQuarantineRequest)
	}
	wantTS := bot.FirstTS.Add(time.Duration(bot.FirstQuarantineRequest-1) * 2 * time.Second)
	if d := bot.FirstQuarantineTS.Sub(wantTS); d < -time.Second || d > time.Second {
		t.Errorf("first quarantine at %v, want about %v", bot.FirstQuarantineTS, wantTS)
	}
	if bot.Reason != "periodic" || bot.MaxRisk < 80 || bot.Denied < 100 {
		t.Errorf("bot reason %q, max risk %d, denied %d", bot.Reason, bot.MaxRisk, bot.Denied)
	}

	human := got["10.0.1.1"]
	if human.Quarantined || human.FirstQuarantineRequest != 0 || human.FirstQuarantineTS != nil || human.Denied != 0 ||
		human.Label != "human" || human.Scenario != "human-spa" || human.Requests != 388 {
		t.Errorf("human = %+v", human)
	}
	if human.MaxRisk >= 60 || human.Reason != "none" {
		t.Errorf("human max risk %d, reason %q", human.MaxRisk, human.Reason)
	}
	// Identities are listed in order of first appearance after sorting.
	if results[0].Identity != "10.0.1.1" {
		t.Errorf("first identity %s, want the human (first request at 09:00:00.004)", results[0].Identity)
	}
}

func TestRunUnsorted(t *testing.T) {
	recs, _ := readFiles(t, "unsorted.jsonl")
	sorted := slices.Clone(recs)
	slices.SortStableFunc(sorted, func(a, b Record) int { return a.TS.Compare(b.TS) })

	got, sum, err := Run(context.Background(), recs, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	if sum.OutOfOrder == 0 {
		t.Error("out-of-order records not counted")
	}
	want, sum2, _ := Run(context.Background(), sorted, config.Default())
	if sum2.OutOfOrder != 0 {
		t.Errorf("sorted input counted %d out of order", sum2.OutOfOrder)
	}
	if len(got) != 1 || !got[0].Quarantined || got[0].FirstQuarantineRequest != want[0].FirstQuarantineRequest ||
		!got[0].FirstQuarantineTS.Equal(*want[0].FirstQuarantineTS) {
		t.Errorf("unsorted %+v, sorted %+v", got, want)
	}
}

func TestRunEnvoy(t *testing.T) {
	recs, bad := readFiles(t, "envoy.log")
	if bad != 2 {
		t.Errorf("%d bad lines, want 2 (50 and the last)", bad)
	}
	results, sum, err := Run(context.Background(), recs, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	got := byIdentity(results)
	if sum.Identities != 3 || sum.NoIdentity != 0 {
		t.Errorf("summary %+v, identities %v", sum, keys(got))
	}
	if bot := got["203.0.113.7"]; !bot.Quarantined || bot.Reason != "periodic" {
		t.Errorf("bot from X-Forwarded-For: %+v", bot)
	}
	if human := got["198.51.100.23"]; human.Quarantined || human.Requests < 50 {
		t.Errorf("human from DOWNSTREAM_REMOTE_ADDRESS: %+v", human)
	}
	if istio := got["192.0.2.50"]; istio.Requests != 2 {
		t.Errorf("istio client: %+v", istio)
	}
}

func TestRunNginx(t *testing.T) {
	recs, bad := readFiles(t, "nginx.log")
	if bad != 2 {
		t.Errorf("%d bad lines, want 2 (30 and the last)", bad)
	}
	// Whole seconds: a 2 s bot's gaps are 2 s exactly, or 1 or 3 s when the
	// noise crosses a second boundary. Still machine-like.
	results, _, err := Run(context.Background(), slices.Clone(recs), config.Default())
	if err != nil {
		t.Fatal(err)
	}
	got := byIdentity(results)
	if !got["203.0.113.9"].Quarantined {
		t.Errorf("bot: %+v", got["203.0.113.9"])
	}
	if got["198.51.100.24"].Quarantined {
		t.Errorf("human: %+v", got["198.51.100.24"])
	}
	if got["10.0.0.5"].Requests != 2 {
		t.Errorf("load balancer without trusted proxies: %+v", keys(got))
	}

	// Behind a trusted load balancer the client is the X-Forwarded-For entry.
	results, _, err = Run(context.Background(), slices.Clone(recs), with(func(c *config.Config) { c.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }))
	if err != nil {
		t.Fatal(err)
	}
	got = byIdentity(results)
	if got["192.0.2.77"].Requests != 2 || got["10.0.0.5"].Requests != 0 {
		t.Errorf("trusted proxy: %v", keys(got))
	}
}

// with returns the default configuration changed by set.
func with(set func(*config.Config)) config.Config {
	c := config.Default()
	set(&c)
	return c
}

func keys(m map[string]Result) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestRunOptions(t *testing.T) {
	recs, _ := readFiles(t, "malformed.jsonl")

	// The identity header decides where it is present; the other records
	// fall back to their address.
	results, sum, err := Run(context.Background(), slices.Clone(recs), with(func(c *config.Config) { c.IdentityHeader = "x-api-key" }))
	if err != nil {
		t.Fatal(err)
	}
	got := byIdentity(results)
	if got["k1"].Requests != 1 || got["192.0.2.1"].Requests != 2 || sum.Identities != 3 {
		t.Errorf("identity header: %v %+v", keys(got), sum)
	}

	// Deny-listed clients are reported as denied from their first request.
	results, _, err = Run(context.Background(), slices.Clone(recs), with(func(c *config.Config) { c.Deny = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")} }))
	if err != nil {
		t.Fatal(err)
	}
	got = byIdentity(results)
	if r := got["192.0.2.1"]; !r.Quarantined || r.FirstQuarantineRequest != 1 || r.Reason != "denylist" || r.Denied != 3 {
		t.Errorf("deny-listed: %+v", r)
	}

	// Shadow mode still reports what would have been denied.
	bot, _ := readFiles(t, "fixed-2s.jsonl")
	results, _, err = Run(context.Background(), bot, with(func(c *config.Config) { c.Mode = config.ModeShadow }))
	if err != nil {
		t.Fatal(err)
	}
	if !results[0].Quarantined {
		t.Errorf("shadow mode: %+v", results[0])
	}
}

func TestRunNoIdentity(t *testing.T) {
	recs := []Record{
		{TS: time.Unix(100, 0), XFF: "198.51.100.1"}, // no address and no trusted proxy: unknown client
		{TS: time.Unix(101, 0), Addr: netip.MustParseAddr("2001:db8:1:2::1")},
		{TS: time.Unix(102, 0), Addr: netip.MustParseAddr("2001:db8:1:2::2")},
	}
	results, sum, err := Run(context.Background(), recs, with(func(c *config.Config) { c.IPv6Prefix = 64 }))
	if err != nil {
		t.Fatal(err)
	}
	if sum.NoIdentity != 1 || len(results) != 1 || results[0].Requests != 2 || results[0].Identity != "2001:db8:1:2::/64" {
		t.Errorf("results %+v, summary %+v", results, sum)
	}
}

func TestRunSweepsIdleState(t *testing.T) {
	// A fixed-interval bot that goes quiet for an hour starts from scratch:
	// the sweep drops its state after 30 idle minutes, as in the service.
	var recs []Record
	a := netip.MustParseAddr("192.0.2.9")
	t0 := time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC)
	// 8 requests (7 intervals) are too few to score; 16 are not.
	for i := range 8 {
		recs = append(recs, Record{TS: t0.Add(time.Duration(i) * 2 * time.Second), Addr: a})
	}
	for i := range 8 {
		recs = append(recs, Record{TS: t0.Add(time.Hour + time.Duration(i)*2*time.Second), Addr: a})
	}
	results, _, err := Run(context.Background(), recs, config.Default())
	if err != nil {
		t.Fatal(err)
	}
	if results[0].Quarantined || results[0].MaxRisk != 0 {
		t.Errorf("two runs of 8 requests an hour apart: %+v", results[0])
	}
	// Without the gap, the same 16 requests are enough evidence to score.
	for i := 8; i < 16; i++ {
		recs[i].TS = t0.Add(time.Duration(i) * 2 * time.Second)
	}
	results, _, _ = Run(context.Background(), recs, config.Default())
	if results[0].MaxRisk == 0 {
		t.Errorf("16 requests 2 s apart scored 0: %+v", results[0])
	}
}

func TestRunCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	recs, _ := readFiles(t, "fixed-2s.jsonl")
	if _, _, err := Run(ctx, recs, config.Default()); err == nil {
		t.Error("Run ignored a canceled context")
	}
}

// TestRunIgnoresRedis: a configuration that shares state through Redis
// (a production config file) backtests on local state, with the same
// result as without it.
func TestRunIgnoresRedis(t *testing.T) {
	bot, _ := readFiles(t, "fixed-2s.jsonl")
	want, _, err := Run(context.Background(), slices.Clone(bot), config.Default())
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := Run(context.Background(), slices.Clone(bot), with(func(c *config.Config) { c.RedisAddr = "127.0.0.1:1" }))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].Quarantined || got[0].FirstQuarantineRequest != want[0].FirstQuarantineRequest {
		t.Errorf("with --redis-addr: %+v; without: %+v", got, want)
	}
}
