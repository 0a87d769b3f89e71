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
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "flowlock"

// Verdict is what a Check answered, as the decision label value. A value
// outside the constants below is counted as VerdictError.
type Verdict uint8

// Verdicts.
const (
	VerdictAllow Verdict = iota // "allow"
	VerdictDeny                 // "deny"
	VerdictError                // "error": Flow Lock itself failed
	numVerdicts
)

var verdictNames = [numVerdicts]string{"allow", "deny", "error"}

// Vocabulary gives the label values of the closed sets that belong to the
// domain: each list is indexed by the domain type's value (the caller passes
// that value as an int), so that adding a reason to the domain type adds it
// here without touching this package. Main builds it from each type's
// String over its list of values. An index outside a list is counted under
// "_other", so a bug can never turn request data into a new time series.
type Vocabulary struct {
	// CheckReasons label flowlock_authz_checks_total by why a check was
	// decided (authz.Outcome).
	CheckReasons []string
	// Fallbacks label flowlock_authz_identity_fallbacks_total by the way
	// identity or time fell back (authz.Fallback).
	Fallbacks []string
	// Admissions label flowlock_quarantine_admissions_total by what sent an
	// identity to quarantine (the risk reason, or a manual ban).
	Admissions []string
}

// maxLabels bounds each list of a Vocabulary, and so the series of each
// metric: a longer list is a wiring bug, found at startup.
const maxLabels = 32

// otherLabel counts indexes outside a Vocabulary list.
const otherLabel = "_other"

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
	checks        [numVerdicts][2][]prometheus.Counter // [verdict][shadow][reason], "_other" last
	checkVec      *prometheus.CounterVec
	checkDuration prometheus.Histogram
	riskScore     prometheus.Histogram
	fallbacks     []prometheus.Counter // "_other" last
	admissions    []prometheus.Counter // "_other" last
	releases      [numReleaseReasons]prometheus.Counter
	stateWriteOK  prometheus.Counter
	stateWriteErr prometheus.Counter
	lastWrite     prometheus.Gauge
	adminRejected prometheus.Counter
}

// New creates Flow Lock's metrics with the label values of v and registers
// them with reg; version is the build's version for flowlock_build_info. A
// nil reg registers nothing, for tools that count but do not serve. New
// panics if reg already holds a metric of the same name, like
// prometheus.MustRegister, or if a list of v is longer than 32: both are
// wiring bugs, found at startup.
func New(reg prometheus.Registerer, version string, v Vocabulary) *Metrics {
	m := &Metrics{}

	m.checkVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "authz", Name: "checks_total",
		Help: "Authorization checks by decision, reason and mode. In shadow mode the decision is the one that would have been enforced.",
	}, []string{"decision", "reason", "mode"})
	reasons := closed(v.CheckReasons)
	for d := range numVerdicts {
		for s, mode := range modeNames {
			m.checks[d][s] = make([]prometheus.Counter, len(reasons))
			for r, name := range reasons {
				m.checks[d][s][r] = m.checkVec.WithLabelValues(verdictNames[d], name, mode)
			}
		}
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
	m.fallbacks = children(fallbackVec, v.Fallbacks)

	m.riskScore = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Subsystem: "risk", Name: "score",
		Help:    "Risk score (0-100) computed at each authorization check.",
		Buckets: prometheus.LinearBuckets(10, 10, 10),
	})

	admissionVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Subsystem: "quarantine", Name: "admissions_total",
		Help: "Identities sent to quarantine, by the detector that fired.",
	}, []string{"reason"})
	m.admissions = children(admissionVec, v.Admissions)

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

// closed returns names with "_other" appended, after checking the list is
// short enough to be a closed set.
func closed(names []string) []string {
	if len(names) > maxLabels {
		panic(fmt.Sprintf("metrics: %d label values, more than %d", len(names), maxLabels))
	}
	return append(append([]string(nil), names...), otherLabel)
}

// children resolves vec's child for each of names and "_other" (last). An
// empty name is a value that is never counted: it gets no series, and is
// counted under "_other" should it ever be.
func children(vec *prometheus.CounterVec, names []string) []prometheus.Counter {
	all := closed(names)
	out := make([]prometheus.Counter, len(all))
	other := vec.WithLabelValues(otherLabel)
	for i, name := range all {
		out[i] = other
		if name != "" {
			out[i] = vec.WithLabelValues(name)
		}
	}
	return out
}

// pick returns cs[i], or the last ("_other") child when i is out of range.
func pick(cs []prometheus.Counter, i int) prometheus.Counter {
	if i < 0 || i >= len(cs)-1 {
		return cs[len(cs)-1]
	}
	return cs[i]
}

// Sources are the values that live in other components, read at every
// scrape; main wires each to a closure over its component. A nil function
// leaves its metric out. Counters must never decrease.
type Sources struct {
	// TrackedIdentities: flowlock_risk_tracked_identities, identities
	// with timing state.
	TrackedIdentities func() float64
	// ActiveQuarantines: flowlock_quarantine_active, identities in
	// quarantine now.
	ActiveQuarantines func() float64
	// RiskEvictions: flowlock_risk_evictions_total, timing-state entries
	// evicted to keep the cap.
	RiskEvictions func() float64
	// QuarantineEvictions: flowlock_quarantine_evictions_total{kind}, the
	// quarantine list's entries dropped at its cap: "active" quarantines
	// ended early (the cap is too small for the attack) and strike
	// "history".
	QuarantineEvictions func() (active, history float64)
	// SharedUp: flowlock_shared_redis_up, 1 while this replica shares
	// state through Redis, 0 while it decides on local state (fallback).
	SharedUp func() float64
	// Shared: flowlock_shared_operations_total{op}, what the link to the
	// other replicas did.
	Shared func() SharedCounts
	// Listeners: flowlock_listener_open_connections{listener} and
	// flowlock_listener_closed_connections_total{listener,reason}, the
	// connection caps and peer allow-lists at work.
	Listeners func() []ListenerCounts
	// FlaggedFingerprints: flowlock_fingerprint_flagged, TLS fingerprints
	// flagged now by the quarantines of identities carrying them.
	FlaggedFingerprints func() float64
	// Tarpit: flowlock_authz_tarpit_total{result}, quarantined clients'
	// answers the tarpit held, and those answered at once because it was
	// full (over_cap: raise --tarpit-max-held, or the bots are many).
	Tarpit func() (held, overCap float64)
}

// ListenerCounts are one listener's connection figures.
type ListenerCounts struct {
	Name    string  // "grpc", "http" or "forward-auth"
	Open    float64 // connections open now
	Evicted float64 // unestablished connections closed to make room (a flood)
	Refused float64 // new connections closed at the cap
	Denied  float64 // connections from peers off the allow-list
}

// SharedCounts are the counters of the link to the other replicas.
type SharedCounts struct {
	Batches      float64 // batches of observations merged in Redis
	Fallbacks    float64 // batches decided on local state: Redis failed or was away
	Merged       float64 // request times fed from the merged stream
	Admitted     float64 // quarantines admitted from the merged stream
	Mirrored     float64 // local quarantine changes written to Redis
	Applied      float64 // other replicas' changes merged into the local list
	Resyncs      float64 // full reads of the shared quarantine
	Dropped      float64 // request times over the per-batch bound of one identity
	CallFailures float64 // Redis calls that failed or ran past their deadline
}

// RegisterSources registers the metrics whose values live in other
// components. Like New, it panics if reg already holds a metric of the same
// name.
func (m *Metrics) RegisterSources(reg prometheus.Registerer, src Sources) {
	if reg == nil {
		return
	}
	gauge := func(subsystem, name, help string, f func() float64) {
		if f != nil {
			reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Namespace: namespace, Subsystem: subsystem, Name: name, Help: help,
			}, f))
		}
	}
	gauge("risk", "tracked_identities", "Identities whose request timing is tracked now.", src.TrackedIdentities)
	gauge("quarantine", "active", "Identities in quarantine now.", src.ActiveQuarantines)
	gauge("shared", "redis_up", "1 while this replica shares detection and quarantine through Redis, 0 while it decides on local state.", src.SharedUp)
	gauge("fingerprint", "flagged", "TLS fingerprints flagged now: enough distinct identities carrying them were quarantined recently; new ones are confirmed faster, never banned.", src.FlaggedFingerprints)
	if src.RiskEvictions != nil {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "risk", Name: "evictions_total",
			Help: "Identities whose timing state was evicted to stay within the tracking cap.",
		}, src.RiskEvictions))
	}
	if src.Listeners != nil {
		reg.MustRegister(&listenerCollector{
			f: src.Listeners,
			open: prometheus.NewDesc(prometheus.BuildFQName(namespace, "listener", "open_connections"),
				"Connections open now, by listener.", []string{"listener"}, nil),
			closed: prometheus.NewDesc(prometheus.BuildFQName(namespace, "listener", "closed_connections_total"),
				"Connections the service closed itself, by listener and reason: evicted (unestablished, to make room under a flood), refused (at the cap), denied (peer off the allow-list).",
				[]string{"listener", "reason"}, nil),
		})
	}
	if src.Shared != nil {
		reg.MustRegister(&shared{
			f: src.Shared,
			desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "shared", "operations_total"),
				"What the link to the other replicas did, by op: batches merged in Redis, batches decided locally (fallback), request times merged, admissions, quarantine changes written and applied, resyncs, dropped times, failed calls.",
				[]string{"op"}, nil),
		})
	}
	if src.Tarpit != nil {
		reg.MustRegister(&pair{
			f: src.Tarpit, labels: [2]string{"held", "over_cap"},
			desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "authz", "tarpit_total"),
				"Quarantined clients' answers under --quarantine-action tarpit, by result: held for --tarpit-delay, or over_cap (answered at once, the tarpit was full).",
				[]string{"result"}, nil),
		})
	}
	if src.QuarantineEvictions != nil {
		reg.MustRegister(&pair{
			f: src.QuarantineEvictions, labels: [2]string{"active", "history"},
			desc: prometheus.NewDesc(prometheus.BuildFQName(namespace, "quarantine", "evictions_total"),
				"Quarantine entries dropped to stay within the list's cap, by kind: active quarantines ended early, or strike history.",
				[]string{"kind"}, nil),
		})
	}
}

// listenerCollector collects the listeners' figures from one reading.
type listenerCollector struct {
	f            func() []ListenerCounts
	open, closed *prometheus.Desc
}

func (c *listenerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.open; ch <- c.closed }

func (c *listenerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, l := range c.f() {
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, l.Open, l.Name)
		ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, l.Evicted, l.Name, "evicted")
		ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, l.Refused, l.Name, "refused")
		ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, l.Denied, l.Name, "denied")
	}
}

// shared collects flowlock_shared_operations_total from one reading.
type shared struct {
	f    func() SharedCounts
	desc *prometheus.Desc
}

func (c *shared) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *shared) Collect(ch chan<- prometheus.Metric) {
	v := c.f()
	for _, x := range []struct {
		op string
		n  float64
	}{
		{"batch", v.Batches}, {"fallback", v.Fallbacks}, {"merged", v.Merged}, {"admitted", v.Admitted},
		{"mirrored", v.Mirrored}, {"applied", v.Applied}, {"resync", v.Resyncs}, {"dropped", v.Dropped},
		{"call_failure", v.CallFailures},
	} {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, x.n, x.op)
	}
}

// pair collects a counter with one label of two values from one call of
// its function, so both come from the same reading:
// flowlock_quarantine_evictions_total{kind} and flowlock_authz_tarpit_total{result}.
type pair struct {
	f      func() (a, b float64)
	labels [2]string // label values of a and b
	desc   *prometheus.Desc
}

func (p *pair) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

func (p *pair) Collect(ch chan<- prometheus.Metric) {
	a, b := p.f()
	ch <- prometheus.MustNewConstMetric(p.desc, prometheus.CounterValue, a, p.labels[0])
	ch <- prometheus.MustNewConstMetric(p.desc, prometheus.CounterValue, b, p.labels[1])
}

// Check counts one authorization check, with reason the index of its
// reason in Vocabulary.CheckReasons. shadow reports whether Flow Lock runs in
// shadow mode, where the verdict is the one that would have been enforced.
func (m *Metrics) Check(v Verdict, reason int, shadow bool) {
	if v >= numVerdicts {
		v = VerdictError
	}
	s := 0
	if shadow {
		s = 1
	}
	pick(m.checks[v][s], reason).Inc()
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
// weaker source, with kind the index of its label in Vocabulary.Fallbacks.
func (m *Metrics) IdentityFallback(kind int) {
	pick(m.fallbacks, kind).Inc()
}

// QuarantineAdmitted counts one identity sent to quarantine, with reason
// the index of its label in Vocabulary.Admissions.
func (m *Metrics) QuarantineAdmitted(reason int) {
	pick(m.admissions, reason).Inc()
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
