// Package metrics defines every Prometheus metric that flowlock-authz exports:
// names, help texts, label sets and bucket layouts, all in this one file.
//
// Nothing here touches the global registry: main creates a registry, passes
// it to New, and serves it with promhttp.HandlerFor. Every label child is resolved when
// the metric is created, so recording on the Check hot path never allocates.
//
// No label ever holds a client address, identity, path or header value.
// Per-client detail belongs in the dashboard and the logs; a label that an
// attacker can choose would let them create time series without bound.
package metrics

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "flowlock"

// Decision is the outcome of one Check, as the decision label value.
// A value outside the constants below is counted as DecisionError.
type Decision uint8

// Decisions.
const (
	DecisionAllow Decision = iota // "allow"
	DecisionDeny                  // "deny"
	DecisionError                 // "error": Flow Lock itself failed
	numDecisions
)

var decisionNames = [numDecisions]string{"allow", "deny", "error"}

// Reason is why a Check was decided the way it was, as the reason label value.
// The built-in reasons are the constants below; callers may add a few of their
// own with RegisterReason before serving.
//
// CARDINALITY PROTECTION: the reason label is a closed set. The zero Reason,
// and any value that is neither a built-in nor returned by RegisterReason, is
// counted as "_other", so a bug that turns request data into a Reason can
// never create new time series.
type Reason uint8

// Built-in reasons.
const (
	ReasonOther        Reason = iota // "_other": unknown or unregistered
	ReasonAllowed                    // "allowed": the score is below the threshold
	ReasonQuarantined                // "quarantined": the identity is already in quarantine
	ReasonAdmitted                   // "admitted": this request sent the identity to quarantine
	ReasonDenylist                   // "denylist": the client matched --deny
	ReasonNoIdentity                 // "no_identity": no identity could be determined; allowed
	ReasonExcludedPath               // "excluded_path": the path is left out of timing; allowed
	ReasonError                      // "error": Flow Lock itself failed
	ReasonVolume                     // "volume": over the per-identity volume limit (--volume-rate)
	numBuiltinReasons
)

// MaxReasons bounds the reason label: the built-in reasons (including
// "_other") plus those added by RegisterReason. With three decisions and two
// modes, flowlock_authz_checks_total never has more than 6*MaxReasons series.
const MaxReasons = 32

var builtinReasonNames = [numBuiltinReasons]string{
	"_other", "allowed", "quarantined", "admitted", "denylist",
	"no_identity", "excluded_path", "error", "volume",
}

// Fallback is a way identity or time extraction fell back to a weaker source,
// as the kind label value. A value outside the constants below is counted as
// FallbackNoIdentity.
type Fallback uint8

// Fallback kinds.
const (
	FallbackNoIdentity        Fallback = iota // "no_identity": no usable identity at all
	FallbackBadIdentityHeader                 // "bad_identity_header": identity header present but invalid
	FallbackBadForwardedFor                   // "bad_forwarded_for": x-forwarded-for unusable where configured; allowed unscored
	FallbackRequestTimeSkew                   // "request_time_skew": Envoy's request time too far off; local clock used
	numFallbacks
)

var fallbackNames = [numFallbacks]string{
	"no_identity", "bad_identity_header", "bad_forwarded_for", "request_time_skew",
}

// AdmissionReason is the detector that sent an identity to quarantine, as the
// reason label value. A value outside the constants below is counted as
// AdmissionOther.
type AdmissionReason uint8

// Admission reasons.
const (
	AdmissionOther          AdmissionReason = iota // "other"
	AdmissionPeriodic                              // "periodic"
	AdmissionLowEntropy                            // "low_entropy"
	AdmissionAntiBursty                            // "anti_bursty"
	AdmissionPeriodicBursts                        // "periodic_bursts"
	AdmissionNoPause                               // "no_pause"
	AdmissionContinuity                            // "continuity"
	AdmissionManual                                // "manual": banned through the admin API
	numAdmissionReasons
)

var admissionNames = [numAdmissionReasons]string{
	"other", "periodic", "low_entropy", "anti_bursty", "periodic_bursts",
	"no_pause", "continuity", "manual",
}

// ParseAdmissionReason returns the AdmissionReason named s, or AdmissionOther
// when s names none. It does not allocate.
func ParseAdmissionReason(s string) AdmissionReason {
	for i, n := range admissionNames {
		if n == s {
			return AdmissionReason(i)
		}
	}
	return AdmissionOther
}

// ReleaseReason is why an identity left quarantine, as the reason label value.
// A value outside the constants below is counted as ReleaseExpired.
type ReleaseReason uint8

// Release reasons.
const (
	ReleaseExpired ReleaseReason = iota // "expired": the quarantine ran out
	ReleaseManual                       // "manual": released through the admin API
	numReleaseReasons
)

var releaseNames = [numReleaseReasons]string{"expired", "manual"}

var modeNames = [2]string{"enforce", "shadow"}

// Metrics records Flow Lock's metrics. Its methods are safe for concurrent
// use and do not allocate. Create it with New.
type Metrics struct {
	checks        [numDecisions][2][MaxReasons]prometheus.Counter // [decision][shadow][reason]
	checkVec      *prometheus.CounterVec
	checkDuration prometheus.Histogram
	riskScore     prometheus.Histogram
	fallbacks     [numFallbacks]prometheus.Counter
	admissions    [numAdmissionReasons]prometheus.Counter
	releases      [numReleaseReasons]prometheus.Counter
	stateWriteOK  prometheus.Counter
	stateWriteErr prometheus.Counter
	lastWrite     prometheus.Gauge
	adminRejected prometheus.Counter

	// nReasons is the number of valid reasons: slots of checks below it are
	// filled and never change again. It is stored after the slot is filled,
	// so Check can read the slot without taking mu.
	nReasons atomic.Uint32

	mu      sync.Mutex        // guards the following fields
	reasons map[string]Reason // every valid reason by label value
}

// New creates Flow Lock's metrics and registers them with reg; version is the
// build's version for flowlock_build_info. A nil reg registers nothing, for
// tools such as replay that count but do not serve. New panics if reg already
// holds a metric of the same name, like prometheus.MustRegister: that is a
// wiring bug, found at startup.
func New(reg prometheus.Registerer, version string) *Metrics {
	m := &Metrics{reasons: make(map[string]Reason, MaxReasons)}

	m.checkVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "authz", Name: "checks_total",
		Help: "Authorization checks by decision, reason and mode. In shadow mode the decision is the one that would have been enforced.",
	}, []string{"decision", "reason", "mode"})
	for i, name := range builtinReasonNames {
		m.addReasonLocked(Reason(i), name)
	}

	m.checkDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "authz", Name: "check_duration_seconds",
		Help:    "Time spent deciding one authorization check, in seconds.",
		Buckets: []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3},
	})

	fallbackVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "authz", Name: "identity_fallbacks_total",
		Help: "Checks whose identity or request time fell back to a weaker source, by kind.",
	}, []string{"kind"})
	for i, name := range fallbackNames {
		m.fallbacks[i] = fallbackVec.WithLabelValues(name)
	}

	m.riskScore = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "risk", Name: "score",
		Help:    "Risk score (0-100) computed at each authorization check.",
		Buckets: prometheus.LinearBuckets(10, 10, 10),
	})

	admissionVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "quarantine", Name: "admissions_total",
		Help: "Identities sent to quarantine, by the detector that fired.",
	}, []string{"reason"})
	for i, name := range admissionNames {
		m.admissions[i] = admissionVec.WithLabelValues(name)
	}

	releaseVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "quarantine", Name: "releases_total",
		Help: "Identities released from quarantine, by reason.",
	}, []string{"reason"})
	for i, name := range releaseNames {
		m.releases[i] = releaseVec.WithLabelValues(name)
	}

	stateWrites := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "state", Name: "writes_total",
		Help: "Writes of the quarantine state file, by result.",
	}, []string{"result"})
	m.stateWriteOK = stateWrites.WithLabelValues("ok")
	m.stateWriteErr = stateWrites.WithLabelValues("error")

	m.lastWrite = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Subsystem: "state", Name: "last_write_timestamp_seconds",
		Help: "Unix time of the last successful write of the quarantine state file; 0 before the first.",
	})

	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; the labels give the version of flowlock-authz and of the Go toolchain that built it.",
	}, []string{"version", "goversion"})
	buildInfo.WithLabelValues(version, runtime.Version()).Set(1)

	if reg != nil {
		reg.MustRegister(m.checkVec, m.checkDuration, fallbackVec, m.riskScore,
			admissionVec, releaseVec, stateWrites, m.lastWrite, buildInfo)
	}
	m.newAdminMetrics(reg)
	return m
}

// RegisterGauges registers the gauges whose values live in other components;
// main wires each to a closure over that component, and reg calls it at every
// scrape. A nil function leaves its metric out. Like New, it panics if reg
// already holds a metric of the same name.
//
//   - flowlock_risk_tracked_identities: identities with timing state.
//   - flowlock_quarantine_active: identities in quarantine now.
//   - flowlock_risk_evictions_total: timing-state entries evicted to keep the
//     cap (a counter: the function must never decrease).
func (m *Metrics) RegisterGauges(reg prometheus.Registerer, trackedIdentities, activeQuarantines, riskEvictions func() float64) {
	if reg == nil {
		return
	}
	if trackedIdentities != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "risk", Name: "tracked_identities",
			Help: "Identities whose request timing is tracked now.",
		}, trackedIdentities))
	}
	if activeQuarantines != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: "quarantine", Name: "active",
			Help: "Identities in quarantine now.",
		}, activeQuarantines))
	}
	if riskEvictions != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "risk", Name: "evictions_total",
			Help: "Identities whose timing state was evicted to stay within the tracking cap.",
		}, riskEvictions))
	}
}

// RegisterReason adds a check reason beyond the built-in ones and returns it;
// registering a name again returns the same Reason. Call it at startup,
// before serving. name must be 1-40 bytes of lowercase letters, digits and
// underscores, starting with a letter. At most MaxReasons reasons exist in
// all; beyond that RegisterReason fails, rather than letting the label grow.
func (m *Metrics) RegisterReason(name string) (Reason, error) {
	if !validReasonName(name) {
		return ReasonOther, fmt.Errorf("metrics: reason %q: want 1-40 of [a-z0-9_], starting with a letter", name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.reasons[name]; ok {
		return r, nil
	}
	n := Reason(m.nReasons.Load())
	if int(n) >= MaxReasons {
		return ReasonOther, errTooManyReasons
	}
	m.addReasonLocked(n, name)
	return n, nil
}

var errTooManyReasons = fmt.Errorf("metrics: more than %d check reasons", MaxReasons)

// addReasonLocked resolves the children of reason r, then publishes it.
func (m *Metrics) addReasonLocked(r Reason, name string) {
	for d := range numDecisions {
		for s, mode := range modeNames {
			m.checks[d][s][r] = m.checkVec.WithLabelValues(decisionNames[d], name, mode)
		}
	}
	m.reasons[name] = r
	m.nReasons.Store(uint32(r) + 1)
}

func validReasonName(s string) bool {
	if len(s) == 0 || len(s) > 40 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// Check counts one authorization check. shadow reports whether Flow Lock runs
// in shadow mode, where decision is the one that would have been enforced.
func (m *Metrics) Check(decision Decision, reason Reason, shadow bool) {
	if decision >= numDecisions {
		decision = DecisionError
	}
	if uint32(reason) >= m.nReasons.Load() {
		reason = ReasonOther
	}
	s := 0
	if shadow {
		s = 1
	}
	m.checks[decision][s][reason].Inc()
}

// ObserveCheckDuration records how long one check took to decide.
func (m *Metrics) ObserveCheckDuration(d time.Duration) {
	m.checkDuration.Observe(d.Seconds())
}

// ObserveRiskScore records the risk score (0-100) computed at one check.
func (m *Metrics) ObserveRiskScore(score int) {
	m.riskScore.Observe(float64(score))
}

// IdentityFallback counts one check whose identity or time fell back to a
// weaker source.
func (m *Metrics) IdentityFallback(kind Fallback) {
	if kind >= numFallbacks {
		kind = FallbackNoIdentity
	}
	m.fallbacks[kind].Inc()
}

// QuarantineAdmitted counts one identity sent to quarantine.
func (m *Metrics) QuarantineAdmitted(reason AdmissionReason) {
	if reason >= numAdmissionReasons {
		reason = AdmissionOther
	}
	m.admissions[reason].Inc()
}

// QuarantineReleased counts one identity released from quarantine.
func (m *Metrics) QuarantineReleased(reason ReleaseReason) {
	if reason >= numReleaseReasons {
		reason = ReleaseExpired
	}
	m.releases[reason].Inc()
}

// StateWrite counts one write of the state file that finished at now with
// err; a successful write also sets flowlock_state_last_write_timestamp_seconds.
func (m *Metrics) StateWrite(err error, now time.Time) {
	if err != nil {
		m.stateWriteErr.Inc()
		return
	}
	m.stateWriteOK.Inc()
	m.lastWrite.Set(float64(now.UnixNano()) / 1e9)
}

// newAdminMetrics creates and registers the admin API's metrics.
func (m *Metrics) newAdminMetrics(reg prometheus.Registerer) {
	m.adminRejected = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "admin", Name: "rejected_requests_total",
		Help: "Admin API requests refused for a missing or wrong admin token (the log says so at most once a minute).",
	})
	if reg != nil {
		reg.MustRegister(m.adminRejected)
	}
}

// AdminRejected counts one admin API request refused for its token.
func (m *Metrics) AdminRejected() { m.adminRejected.Inc() }
