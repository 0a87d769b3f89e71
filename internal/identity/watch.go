package identity

import (
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Watch defaults.
const (
	// WatchWindow is how often a Watch may report each cause, and the
	// window it counts in.
	WatchWindow = time.Minute
	// WatchMinChecks is how many Checks with one cause make it a finding: a
	// stray probe or two is no misconfiguration. They need not come within
	// one window: a person refreshing by hand behind a misconfigured proxy
	// sends a few requests a minute, and must be reported too.
	WatchMinChecks = 5
	// MaxCauses bounds the cause codes a Watch counts (0 … MaxCauses-1).
	MaxCauses = 16
)

// WatchOptions configure a Watch.
type WatchOptions struct {
	Logger *slog.Logger  // nil discards
	Window time.Duration // 0 means WatchWindow
	// Names name the cause codes (index = code) for the log and the
	// dashboard. Code 0 means "nothing wrong" and is never counted.
	Names []string
	// Explain says what a cause seen from peer means and what to change
	// (see authz.ClientRules.Explain). It runs at most once per cause and
	// window, never for each Check.
	Explain func(cause uint8, peer netip.Addr) (problem, fix string)
	// Every reports causes that are findings only when every Check of the
	// window has them (a header that some clients send and others do not
	// is normal). nil means none.
	Every func(cause uint8) bool
}

// Finding is one cause that a Watch reported.
type Finding struct {
	Code    uint8
	Cause   string     // its name from WatchOptions.Names
	Peer    netip.Addr // a peer that sent such a Check (the latest report's)
	Problem string     // from Explain
	Fix     string
	Count   uint64    // Checks with the cause since the process started
	First   time.Time // first reported
	Last    time.Time // latest Check with the cause
}

// Watch says so, loudly, when the service is misconfigured: when Checks
// cannot be read the configured way (no X-Forwarded-For from a trusted
// proxy, fewer entries than --xff-trusted-hops, an identity header nobody
// sends), a metric alone shows it only to someone who looks, and detection
// is quietly off. A Watch counts the Checks of each cause; the moment one
// cause reaches WatchMinChecks within a window it logs one WARN line that
// names the cause, the peer and the fix, and keeps the finding for the
// dashboard. Each cause is logged at most once per window.
//
// Record is safe for concurrent use and does not allocate; it is meant for
// every Check. The zero Watch is not usable; call NewWatch. A nil *Watch
// records nothing.
type Watch struct {
	log     *slog.Logger
	window  time.Duration
	names   []string
	explain func(uint8, netip.Addr) (string, string)
	every   [MaxCauses]bool
	// anyEvery is set when some cause is judged against every Check; only
	// then is each Check counted (a counter every Check of every core
	// would otherwise write).
	anyEvery bool

	start  atomic.Int64             // Unix nanoseconds at which the current window began; 0 before the first Check
	checks atomic.Uint64            // Checks in the current window
	counts [MaxCauses]atomic.Uint64 // since the cause was last reported (for Every causes: in this window)
	told   [MaxCauses]atomic.Bool   // the cause was reported in this window
	totals [MaxCauses]atomic.Uint64 // since the start
	last   [MaxCauses]atomic.Int64  // Unix nanoseconds of the latest Check with the cause

	mu       sync.Mutex
	findings [MaxCauses]Finding // Code 0 where not (yet) reported
}

// NewWatch returns a Watch with the given options.
func NewWatch(o WatchOptions) *Watch {
	w := &Watch{log: o.Logger, window: o.Window, names: o.Names, explain: o.Explain}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("component", "identity")
	if w.window <= 0 {
		w.window = WatchWindow
	}
	if w.explain == nil {
		w.explain = func(uint8, netip.Addr) (string, string) {
			return "Checks could not find the client the configured way", "check --trusted-proxies, --xff-trusted-hops and --identity-header against what your proxy sends"
		}
	}
	if o.Every != nil {
		for c := range uint8(MaxCauses) {
			w.every[c] = o.Every(c)
			w.anyEvery = w.anyEvery || w.every[c]
		}
	}
	return w
}

// Record counts one Check at now with the given cause (0: nothing wrong;
// codes of MaxCauses and above are ignored) from peer.
func (w *Watch) Record(cause uint8, peer netip.Addr, now time.Time) {
	if w == nil {
		return
	}
	t := now.UnixNano()
	w.turn(t)
	var checks uint64
	if w.anyEvery {
		checks = w.checks.Add(1)
	}
	if cause == 0 || cause >= MaxCauses {
		return
	}
	w.totals[cause].Add(1)
	w.last[cause].Store(t)
	n := w.counts[cause].Add(1)
	if n < WatchMinChecks || (w.every[cause] && n != checks) {
		return
	}
	if !w.told[cause].CompareAndSwap(false, true) {
		return // one Check per window and cause reports it
	}
	w.report(cause, peer, now, n)
}

// turn starts the first window, or a new one when the current is over.
// One caller wins the turn of a window.
func (w *Watch) turn(t int64) {
	start := w.start.Load()
	if start == 0 {
		w.start.CompareAndSwap(0, t)
		return
	}
	if t-start < int64(w.window) || !w.start.CompareAndSwap(start, t) {
		return // window still open, or another Check is turning it
	}
	w.checks.Store(0)
	for i := range w.counts {
		// A cause reported in the window that ended counts afresh; one not
		// yet reported keeps counting across windows, so a slow trickle is
		// reported too. An Every cause is judged window by window.
		if w.told[i].Swap(false) || w.every[i] {
			w.counts[i].Store(0)
		}
	}
}

// report logs a cause and keeps it as a finding. It runs at most once per
// cause and window.
func (w *Watch) report(cause uint8, peer netip.Addr, now time.Time, n uint64) {
	problem, fix := w.explain(cause, peer)
	name := w.name(cause)
	w.log.Warn(problem, "cause", name, "peer", addrText(peer), "fix", fix,
		"checks", n, "within", w.window.String())
	w.mu.Lock()
	f := &w.findings[cause]
	if f.Code == 0 {
		f.First = now
	}
	f.Code, f.Cause, f.Peer, f.Problem, f.Fix = cause, name, peer, problem, fix
	w.mu.Unlock()
}

// Findings returns the causes reported whose latest Check is at most two
// windows before now, in order of code: what is still going on.
func (w *Watch) Findings(now time.Time) []Finding {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []Finding
	for c := range w.findings {
		f := w.findings[c]
		if f.Code == 0 {
			continue
		}
		last := w.last[c].Load()
		if now.UnixNano()-last > 2*int64(w.window) {
			continue
		}
		f.Count, f.Last = w.totals[c].Load(), time.Unix(0, last)
		out = append(out, f)
	}
	return out
}

func (w *Watch) name(cause uint8) string {
	if int(cause) < len(w.names) {
		return w.names[cause]
	}
	return "cause_" + strconv.Itoa(int(cause))
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return "unknown"
	}
	return a.String()
}
