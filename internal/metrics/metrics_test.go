package metrics

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

// vocab mirrors the service's vocabulary (cmd/flowlock-authz builds the
// real one from the domain types and tests that it does).
var vocab = Vocabulary{
	CheckReasons: []string{"allowed", "quarantined", "admitted", "denylist", "no_identity", "volume", "excluded_path", "error"},
	Fallbacks:    []string{"", "bad_identity_header", "bad_forwarded_for", "no_identity", "request_time_skew", "no_identity_header"},
	Admissions:   []string{"none", "periodic", "low_entropy", "anti_bursty", "periodic_bursts", "no_pause", "continuity", "periodic_cycle", "manual"},
}

// Indexes into vocab.
const (
	rAllowed, rQuarantined, rAdmitted, rError = 0, 1, 2, 7
	fBadForwardedFor, fRequestTimeSkew        = 2, 4
	aPeriodic, aNoPause                       = 1, 5
)

var update = flag.Bool("update", false, "update golden files")

// goVersionPlaceholder stands for runtime.Version() in the golden file, so it
// does not change with the toolchain.
const goVersionPlaceholder = "GOVERSION"

// record drives every metric once, with fixed values, for the golden file.
func record(t *testing.T, m *Metrics) {
	t.Helper()
	m.Check(VerdictAllow, rAllowed, false)
	m.Check(VerdictAllow, rAllowed, false)
	m.Check(VerdictDeny, rAdmitted, false)
	m.Check(VerdictDeny, rQuarantined, true)
	m.Check(VerdictError, rError, false)
	m.ObserveCheckDuration(42 * time.Microsecond)
	m.ObserveCheckDuration(3 * time.Millisecond)
	m.ObserveRiskScore(5)
	m.ObserveRiskScore(97)
	m.IdentityFallback(fBadForwardedFor)
	m.QuarantineAdmitted(aPeriodic)
	m.QuarantineReleased(ReleaseExpired)
	m.StateWrite(nil, time.Unix(1_790_000_000, 500_000_000))
	m.StateWrite(errors.New("disk full"), time.Unix(1_790_000_001, 0))
	m.AdminRejected()
}

func newGathered(t *testing.T) (*prometheus.Registry, *Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := New(reg, "v1.2.3", vocab)
	m.RegisterSources(reg, Sources{
		TrackedIdentities:   func() float64 { return 12 },
		ActiveQuarantines:   func() float64 { return 3 },
		RiskEvictions:       func() float64 { return 7 },
		QuarantineEvictions: func() (float64, float64) { return 2, 5 },
		Tarpit:              func() (float64, float64) { return 9, 1 },
		SharedUp:            func() float64 { return 1 },
		Shared:              func() SharedCounts { return SharedCounts{Batches: 10, Merged: 40, Admitted: 1, Mirrored: 2} },
		Listeners: func() []ListenerCounts {
			return []ListenerCounts{{Name: "grpc", Open: 3, Evicted: 7}, {Name: "http", Open: 1, Denied: 2}}
		},
		FlaggedFingerprints: func() float64 { return 2 },
	})
	record(t, m)
	return reg, m
}

func TestGolden(t *testing.T) {
	reg, _ := newGathered(t)
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				t.Fatal(err)
			}
		}
		got := bytes.ReplaceAll(buf.Bytes(), []byte(`goversion="`+runtime.Version()+`"`), []byte(`goversion="`+goVersionPlaceholder+`"`))
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	want = bytes.ReplaceAll(want, []byte(goVersionPlaceholder), []byte(runtime.Version()))
	if err := testutil.GatherAndCompare(reg, bytes.NewReader(want)); err != nil {
		t.Errorf("metrics differ from %s (run go test -update if the change is intended):\n%v", golden, err)
	}
}

func TestLint(t *testing.T) {
	reg, _ := newGathered(t)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestNoForbiddenLabels guards against labels that could carry client data.
func TestNoForbiddenLabels(t *testing.T) {
	reg, _ := newGathered(t)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{
		"decision": true, "reason": true, "mode": true, "kind": true,
		"result": true, "version": true, "goversion": true, "le": true,
		"op": true, "listener": true, // set by code: shared-state operations, the three listeners
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "flowlock_") {
			t.Errorf("metric %s lacks the flowlock_ prefix", mf.GetName())
		}
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if !allowed[lp.GetName()] {
					t.Errorf("metric %s has label %q; labels must be bounded enums", mf.GetName(), lp.GetName())
				}
			}
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	m := New(prometheus.NewRegistry(), "test", vocab)
	now := time.Unix(1_790_000_000, 0)
	tests := []struct {
		name string
		f    func()
	}{
		{"Check", func() { m.Check(VerdictDeny, rAdmitted, false) }},
		{"Check shadow", func() { m.Check(VerdictAllow, rAllowed, true) }},
		{"Check unknown reason", func() { m.Check(VerdictAllow, 200, false) }},
		{"ObserveCheckDuration", func() { m.ObserveCheckDuration(150 * time.Microsecond) }},
		{"ObserveRiskScore", func() { m.ObserveRiskScore(64) }},
		{"IdentityFallback", func() { m.IdentityFallback(fRequestTimeSkew) }},
		{"QuarantineAdmitted", func() { m.QuarantineAdmitted(aNoPause) }},
		{"QuarantineReleased", func() { m.QuarantineReleased(ReleaseManual) }},
		{"StateWrite", func() { m.StateWrite(nil, now) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := testing.AllocsPerRun(100, tc.f); got != 0 {
				t.Errorf("%s: %v allocs/op, want 0", tc.name, got)
			}
		})
	}
}

func checkCount(m *Metrics, decision, reason, mode string) float64 {
	return testutil.ToFloat64(m.checkVec.WithLabelValues(decision, reason, mode))
}

// TestCardinalityProtection checks that out-of-range enum values fold into
// their catch-all label instead of creating series or panicking.
func TestCardinalityProtection(t *testing.T) {
	m := New(nil, "test", vocab)
	before := testutil.CollectAndCount(m.checkVec)

	m.Check(VerdictAllow, len(vocab.CheckReasons), false) // one past the list
	m.Check(VerdictAllow, -1, true)
	m.Check(Verdict(9), rAllowed, false)
	m.IdentityFallback(200)
	m.IdentityFallback(0) // the empty name: never counted, no series of its own
	m.QuarantineAdmitted(200)
	m.QuarantineAdmitted(-3)
	m.QuarantineReleased(ReleaseReason(200))

	if got := testutil.CollectAndCount(m.checkVec); got != before {
		t.Errorf("series after unknown values = %d, want %d", got, before)
	}
	for _, tc := range []struct {
		got  float64
		want float64
		what string
	}{
		{checkCount(m, "allow", "_other", "enforce"), 1, "reason past the list"},
		{checkCount(m, "allow", "_other", "shadow"), 1, "reason -1"},
		{checkCount(m, "error", "allowed", "enforce"), 1, "verdict 9"},
		{testutil.ToFloat64(m.fallbacks[len(m.fallbacks)-1]), 2, "fallback 200 and the empty name"},
		{testutil.ToFloat64(m.admissions[len(m.admissions)-1]), 2, "admissions 200 and -3"},
		{testutil.ToFloat64(m.releases[ReleaseExpired]), 1, "release 200"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: count = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
}

func TestRegisterSourcesNil(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, "test", vocab)
	m.RegisterSources(reg, Sources{ActiveQuarantines: func() float64 { return 2 }})
	m.RegisterSources(nil, Sources{}) // no registry: nothing to do
	want := `# HELP flowlock_quarantine_active Identities in quarantine now.
# TYPE flowlock_quarantine_active gauge
flowlock_quarantine_active 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"flowlock_quarantine_active", "flowlock_risk_tracked_identities", "flowlock_risk_evictions_total",
		"flowlock_quarantine_evictions_total"); err != nil {
		t.Error(err)
	}
}

func TestNewTwicePanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, "a", vocab)
	defer func() {
		if recover() == nil {
			t.Error("second New on one registry did not panic")
		}
	}()
	New(reg, "b", vocab)
}

func BenchmarkCheck(b *testing.B) {
	m := New(prometheus.NewRegistry(), "bench", vocab)
	b.ReportAllocs()
	for b.Loop() {
		m.Check(VerdictAllow, rAllowed, false)
	}
}
