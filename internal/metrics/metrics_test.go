package metrics

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "update golden files")

// goVersionPlaceholder stands for runtime.Version() in the golden file, so it
// does not change with the toolchain.
const goVersionPlaceholder = "GOVERSION"

// record drives every metric once, with fixed values, for the golden file.
func record(t *testing.T, m *Metrics) {
	t.Helper()
	m.Check(DecisionAllow, ReasonAllowed, false)
	m.Check(DecisionAllow, ReasonAllowed, false)
	m.Check(DecisionDeny, ReasonAdmitted, false)
	m.Check(DecisionDeny, ReasonQuarantined, true)
	m.Check(DecisionError, ReasonError, false)
	m.ObserveCheckDuration(42 * time.Microsecond)
	m.ObserveCheckDuration(3 * time.Millisecond)
	m.ObserveRiskScore(5)
	m.ObserveRiskScore(97)
	m.IdentityFallback(FallbackBadForwardedFor)
	m.QuarantineAdmitted(AdmissionPeriodic)
	m.QuarantineReleased(ReleaseExpired)
	m.StateWrite(nil, time.Unix(1_790_000_000, 500_000_000))
	m.StateWrite(errors.New("disk full"), time.Unix(1_790_000_001, 0))
	m.AdminRejected()
}

func newGathered(t *testing.T) (*prometheus.Registry, *Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m := New(reg, "v1.2.3")
	m.RegisterGauges(reg, func() float64 { return 12 }, func() float64 { return 3 }, func() float64 { return 7 })
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
	m := New(prometheus.NewRegistry(), "test")
	custom, err := m.RegisterReason("volume")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_790_000_000, 0)
	tests := []struct {
		name string
		f    func()
	}{
		{"Check", func() { m.Check(DecisionDeny, ReasonAdmitted, false) }},
		{"Check shadow", func() { m.Check(DecisionAllow, ReasonAllowed, true) }},
		{"Check custom reason", func() { m.Check(DecisionAllow, custom, false) }},
		{"Check unknown reason", func() { m.Check(DecisionAllow, Reason(200), false) }},
		{"ObserveCheckDuration", func() { m.ObserveCheckDuration(150 * time.Microsecond) }},
		{"ObserveRiskScore", func() { m.ObserveRiskScore(64) }},
		{"IdentityFallback", func() { m.IdentityFallback(FallbackRequestTimeSkew) }},
		{"QuarantineAdmitted", func() { m.QuarantineAdmitted(AdmissionNoPause) }},
		{"ParseAdmissionReason", func() { m.QuarantineAdmitted(ParseAdmissionReason("continuity")) }},
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
	m := New(nil, "test")
	before := testutil.CollectAndCount(m.checkVec)

	m.Check(DecisionAllow, Reason(MaxReasons-1), false) // a slot nobody registered
	m.Check(DecisionAllow, Reason(255), true)
	m.Check(Decision(9), ReasonAllowed, false)
	m.IdentityFallback(Fallback(200))
	m.QuarantineAdmitted(AdmissionReason(200))
	m.QuarantineAdmitted(ParseAdmissionReason("<script>"))
	m.QuarantineReleased(ReleaseReason(200))

	if got := testutil.CollectAndCount(m.checkVec); got != before {
		t.Errorf("series after unknown values = %d, want %d", got, before)
	}
	for _, tc := range []struct {
		got  float64
		want float64
		what string
	}{
		{checkCount(m, "allow", "_other", "enforce"), 1, "unregistered reason slot"},
		{checkCount(m, "allow", "_other", "shadow"), 1, "reason 255"},
		{checkCount(m, "error", "allowed", "enforce"), 1, "decision 9"},
		{testutil.ToFloat64(m.fallbacks[FallbackNoIdentity]), 1, "fallback 200"},
		{testutil.ToFloat64(m.admissions[AdmissionOther]), 2, "admission 200 and unknown name"},
		{testutil.ToFloat64(m.releases[ReleaseExpired]), 1, "release 200"},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: count = %v, want %v", tc.what, tc.got, tc.want)
		}
	}
}

func TestParseAdmissionReason(t *testing.T) {
	for i, name := range admissionNames {
		if got := ParseAdmissionReason(name); got != AdmissionReason(i) {
			t.Errorf("ParseAdmissionReason(%q) = %d, want %d", name, got, i)
		}
	}
	if got := ParseAdmissionReason("Periodic"); got != AdmissionOther {
		t.Errorf("ParseAdmissionReason(%q) = %d, want AdmissionOther", "Periodic", got)
	}
}

func TestRegisterReason(t *testing.T) {
	m := New(nil, "test")

	r, err := m.RegisterReason("allowed")
	if err != nil || r != ReasonAllowed {
		t.Errorf(`RegisterReason("allowed") = %d, %v; want ReasonAllowed, nil`, r, err)
	}
	custom, err := m.RegisterReason("geo_block")
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := m.RegisterReason("geo_block"); again != custom {
		t.Errorf("registering twice gave %d then %d", custom, again)
	}
	m.Check(DecisionDeny, custom, false)
	if got := checkCount(m, "deny", "geo_block", "enforce"); got != 1 {
		t.Errorf(`checks{deny,geo_block,enforce} = %v, want 1`, got)
	}
	// A registered reason exists at 0 for every decision and mode.
	if got := testutil.CollectAndCount(m.checkVec); got != 3*2*int(numBuiltinReasons+1) {
		t.Errorf("series = %d, want %d", got, 3*2*int(numBuiltinReasons+1))
	}

	for _, bad := range []string{"", "_other", "Volume", "1st", "has space", "client-ip", strings.Repeat("a", 41), "ünicode"} {
		if r, err := m.RegisterReason(bad); err == nil {
			t.Errorf("RegisterReason(%q) = %d, nil; want an error", bad, r)
		}
	}

	for i := int(numBuiltinReasons) + 1; i < MaxReasons; i++ {
		if _, err := m.RegisterReason(fmt.Sprintf("r%d", i)); err != nil {
			t.Fatalf("reason %d of %d: %v", i+1, MaxReasons, err)
		}
	}
	if _, err := m.RegisterReason("one_too_many"); !errors.Is(err, errTooManyReasons) {
		t.Errorf("reason %d: err = %v, want errTooManyReasons", MaxReasons+1, err)
	}
	if got, want := testutil.CollectAndCount(m.checkVec), 3*2*MaxReasons; got != want {
		t.Errorf("series at the cap = %d, want %d", got, want)
	}
}

// TestRegisterReasonConcurrent runs registration beside Check, for -race.
func TestRegisterReasonConcurrent(t *testing.T) {
	m := New(nil, "test")
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				m.Check(Decision(i%3), Reason(i%MaxReasons), g%2 == 0)
			}
		})
	}
	wg.Go(func() {
		for i := range 10 {
			if _, err := m.RegisterReason(fmt.Sprintf("custom_%d", i)); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
}

func TestRegisterGaugesNil(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, "test")
	m.RegisterGauges(reg, nil, func() float64 { return 2 }, nil)
	m.RegisterGauges(nil, nil, nil, nil) // no registry: nothing to do
	want := `# HELP flowlock_quarantine_active Identities in quarantine now.
# TYPE flowlock_quarantine_active gauge
flowlock_quarantine_active 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"flowlock_quarantine_active", "flowlock_risk_tracked_identities", "flowlock_risk_evictions_total"); err != nil {
		t.Error(err)
	}
}

func TestNewTwicePanics(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg, "a")
	defer func() {
		if recover() == nil {
			t.Error("second New on one registry did not panic")
		}
	}()
	New(reg, "b")
}

func BenchmarkCheck(b *testing.B) {
	m := New(prometheus.NewRegistry(), "bench")
	b.ReportAllocs()
	for b.Loop() {
		m.Check(DecisionAllow, ReasonAllowed, false)
	}
}
