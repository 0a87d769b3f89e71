package identity

import (
	"log/slog"
	"sync/atomic"
	"time"
)

// Watch defaults.
const (
	// WatchWindow is how often a Watch may warn, and the window it judges.
	WatchWindow = time.Minute
	// watchMinChecks is the fewest Checks in a window that a Watch judges:
	// a handful of probes without an address is no misconfiguration.
	watchMinChecks = 20
)

// Watch warns, at most once per window, when most Checks of the window
// found no identity. Such Checks are allowed without being timed, so a
// configuration that trusts every proxy (or an identity header nobody
// sends) quietly turns detection off; a metric alone shows it only to
// someone who looks. The zero Watch is not usable; call NewWatch.
//
// Record is safe for concurrent use and does not allocate; it is meant
// for every Check.
type Watch struct {
	log    *slog.Logger
	window time.Duration

	start   atomic.Int64  // Unix nanoseconds at which the current window began; 0 before the first Check
	checks  atomic.Uint64 // Checks in the current window
	missing atomic.Uint64 // of which found no identity
}

// NewWatch returns a Watch that logs to log (nil discards) and judges
// windows of the given length (0 means WatchWindow).
func NewWatch(log *slog.Logger, window time.Duration) *Watch {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if window <= 0 {
		window = WatchWindow
	}
	return &Watch{log: log.With("component", "identity"), window: window}
}

// Record counts one Check at now; noIdentity reports that it found no
// identity. At the first Check after a window ends it judges that window:
// more than half without identity, out of at least 20, gives one WARN.
func (w *Watch) Record(noIdentity bool, now time.Time) {
	w.judge(now.UnixNano())
	w.checks.Add(1)
	if noIdentity {
		w.missing.Add(1)
	}
}

// judge starts the first window, or ends the current one when it is over
// and warns about it if it deserves it. One caller wins the end of a window.
func (w *Watch) judge(t int64) {
	start := w.start.Load()
	if start == 0 {
		w.start.CompareAndSwap(0, t)
		return
	}
	if t-start < int64(w.window) || !w.start.CompareAndSwap(start, t) {
		return // window still open, or another Check is judging it
	}
	checks, missing := w.checks.Swap(0), w.missing.Swap(0)
	if checks >= watchMinChecks && missing*2 > checks {
		w.log.Warn("most Checks found no client identity and were allowed without detection; "+
			"check --trusted-proxies, --xff-trusted-hops and --identity-header against what your proxy sends",
			"checks", checks, "no_identity", missing, "window", time.Duration(t-start).Round(time.Second).String())
	}
}
