// Package dashboard is the HTTP side of flowlock-authz: the live command
// center page, the JSON admin API under /api/v1 with its server-sent events
// stream, Prometheus metrics, and the health and readiness probes. Every
// route is listed in routes.go.
//
// The package knows nothing about how Flow Lock scores or quarantines
// clients. It declares the Backend it needs and the view types it serves;
// main adapts the risk engine and the quarantine store to them, and feeds a
// Tracker from every Check for the headline figures.
//
// Mutations (ban, release, extend) require the admin token as a bearer
// token. Without a configured token they are refused, never open. Values
// that come from the wire or from clients' requests are only ever written as
// JSON, never spliced into markup or headers; the page's scripts insert them
// as text, and a strict Content-Security-Policy with Trusted Types makes
// the browser refuse HTML sinks altogether.
package dashboard

import (
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// Identity is one tracked client, as /api/v1/identities lists it.
type Identity struct {
	Identity    string    `json:"identity"`    // as written by IdentityText
	Score       int       `json:"score"`       // risk score now, 0-100
	Reason      string    `json:"reason"`      // detector behind the score, or ""
	Requests    uint64    `json:"requests"`    // requests seen since tracking began
	FirstSeen   time.Time `json:"first_seen"`  // first request tracked
	LastSeen    time.Time `json:"last_seen"`   // latest request
	Shared      bool      `json:"shared"`      // looks like many people behind one address
	Quarantined bool      `json:"quarantined"` // in quarantine now
	Recent      []uint32  `json:"recent_ms"`   // latest inter-request intervals in ms, oldest first (up to 32)
}

// Quarantine is one identity in quarantine, as /api/v1/quarantine lists it.
type Quarantine struct {
	Identity   string    `json:"identity"`    // as written by IdentityText
	Reason     string    `json:"reason"`      // detector that fired, or the operator's reason
	Score      int       `json:"score"`       // risk score at admission, 0-100
	Strikes    int       `json:"strikes"`     // admissions so far, for escalation
	Manual     bool      `json:"manual"`      // banned through the admin API
	Since      time.Time `json:"since"`       // admission time
	Until      time.Time `json:"until"`       // the quarantine heals at this time
	RetryAfter int       `json:"retry_after"` // seconds left, as a deny's Retry-After would say
	Hits       uint64    `json:"hits"`        // requests refused by this quarantine so far (since the last restart)
}

// Explanation says why an identity scored what it scored.
type Explanation struct {
	Identity
	// Features are the scoring components, in the engine's order.
	Features []Feature `json:"features"`
	// Intervals is how many intervals the engine has seen in all.
	Intervals int `json:"intervals"`
	// Threshold is the score that quarantines once it held Confirm
	// consecutive times; ChallengeThreshold starts the watch band.
	Threshold          int `json:"threshold"`
	ChallengeThreshold int `json:"challenge_threshold"`
	Confirm            int `json:"confirm"`
	// Consecutive is how many consecutive evaluations reached Threshold.
	Consecutive int  `json:"consecutive"`
	Confirmed   bool `json:"confirmed"`
}

// Feature is one scoring component of an Explanation.
type Feature struct {
	Name        string  `json:"name"`        // e.g. "periodic"
	Value       float64 `json:"value"`       // the component's statistic
	Probability float64 `json:"probability"` // its output in [0, 1] before the gate
	Gate        float64 `json:"gate"`        // the weight its evidence gets
	Threshold   string  `json:"threshold"`   // when it fires, in words
}

// Lists are the operator's allow and deny lists, as CIDR prefixes.
type Lists struct {
	Allow []string `json:"allow"`
	Deny  []string `json:"deny"`
}

// Backend is what the dashboard needs from the rest of flowlock-authz. Its
// methods must be safe for concurrent use. They receive the time from
// Options.Now, so tests and replays can drive them with a fixed clock.
type Backend interface {
	// Identities returns at most limit tracked identities, riskiest first.
	Identities(limit int, now time.Time) []Identity

	// Quarantined returns at most limit of the identities in quarantine at
	// now, soonest release first, and the number of all of them. Its cost
	// in memory must follow limit, not the size of the quarantine, which an
	// attacker with many addresses can fill: the stream asks every second
	// and anyone may ask GET /api/v1/quarantine.
	Quarantined(limit int, now time.Time) (list []Quarantine, total int)

	// QuarantineOf returns the quarantine of id at now, or false if id is
	// not in quarantine. It must be cheap: anyone may ask.
	QuarantineOf(id identity.ID, now time.Time) (Quarantine, bool)

	// Decisions returns the latest quarantine transitions the backend
	// keeps (a bounded number), newest first, at most limit, and only those
	// of `of` unless it is the zero ID.
	Decisions(limit int, of identity.ID) []Decision

	// Ban puts id in quarantine for ttl with the given reason and returns
	// the resulting entry. A ttl of 0 means the backend's default. An error
	// that wraps ErrInvalid is the caller's fault and its text is shown to
	// the caller; any other error is logged and answered with a generic 500.
	Ban(id identity.ID, ttl time.Duration, reason string, now time.Time) (Quarantine, error)

	// Release ends the quarantine of id and reports whether it was in
	// quarantine. Errors are treated as for Ban.
	Release(id identity.ID, now time.Time) (bool, error)

	// Extend lengthens the quarantine of id by `by` and returns the
	// resulting entry, or false if id is not in quarantine. Errors are
	// treated as for Ban.
	Extend(id identity.ID, by time.Duration, now time.Time) (Quarantine, bool, error)

	// Explain says why id scores what it scores, or false if id is not
	// tracked.
	Explain(id identity.ID, now time.Time) (Explanation, bool)

	// Tracked returns the number of identities with timing state. It must
	// be cheap: the stream asks every second.
	Tracked() int

	// Lists returns the allow and deny lists in force.
	Lists() Lists
}

// ErrInvalid marks a Backend error caused by the request, such as a ban on
// an allow-listed client; the dashboard answers it with 400 and its text.
var ErrInvalid = errors.New("invalid request")

// Sharing is the state of the link to the other replicas, as the page
// shows it.
type Sharing struct {
	// State is "shared" while detection and quarantine are shared through
	// Redis, "fallback" while this replica decides on its own.
	State string `json:"state"`
	// Detail says why, e.g. the last Redis error.
	Detail string `json:"detail,omitempty"`
}

// Warning is a misconfiguration the page shows as a banner: requests that
// Flow Lock could not read the configured way, and what to change. main
// fills it from its identity.Watch; every text in it is plain text that
// the page inserts as text.
type Warning struct {
	Cause    string    `json:"cause"`    // e.g. "no_forwarded_for"
	Peer     string    `json:"peer"`     // the proxy (or client) address that sent them, or "unknown"
	Count    uint64    `json:"count"`    // requests with this cause since the start
	Unscored bool      `json:"unscored"` // they were allowed without being scored
	Problem  string    `json:"problem"`  // what is wrong, in a sentence
	Fix      string    `json:"fix"`      // what to change
	Since    time.Time `json:"since"`    // first reported
	Last     time.Time `json:"last"`     // latest request with it
}

// ReadyLine is the line /readyz adds for the link: "shared state: redis
// connected", or "shared state: local fallback (why)".
func (sh Sharing) ReadyLine() string {
	if sh.State == "shared" {
		return "shared state: redis connected"
	}
	if sh.Detail == "" {
		return "shared state: local fallback"
	}
	return "shared state: local fallback (" + sh.Detail + ")"
}

// DefaultMaxBanTTL is Options.MaxBanTTL when it is 0.
const DefaultMaxBanTTL = 30 * 24 * time.Hour

// Options configures the handler returned by New.
type Options struct {
	// Backend serves the data and carries out bans and releases. Required.
	Backend Backend

	// AdminToken is the bearer token that POST and DELETE requests must
	// present. Empty disables those requests: they get 403.
	AdminToken string

	// IPv6Prefix groups IPv6 addresses given to the admin API, as
	// --ipv6-prefix does for requests. 0 means 64.
	IPv6Prefix int

	// NameIdentities reports that clients may be identified by a header
	// value (--identity-header), so a ban may name one. Without it only
	// addresses identify clients, and a ban on anything else, which would
	// match no client, is refused.
	NameIdentities bool

	// Now returns the current time. nil means time.Now.
	Now func() time.Time

	// Metrics serves GET /metrics, typically promhttp.HandlerFor(registry).
	// nil leaves /metrics out (404).
	Metrics http.Handler

	// Ready reports why the service is not ready to serve, or nil when it
	// is (state loaded, listeners up). It backs GET /readyz and must be
	// cheap. nil means always ready.
	Ready func() error

	// Sharing reports the link to the other replicas for the page and
	// /readyz; nil means this process keeps all state itself (no
	// --redis-addr).
	Sharing func() Sharing

	// Fingerprints returns the TLS fingerprints flagged at now (keys,
	// never values), most recently quarantined first, for the page and
	// GET /api/v1/fingerprints; nil means no fingerprint evidence is kept
	// (no --fingerprint-header).
	Fingerprints func(now time.Time) []FlaggedFingerprint
	// Fleets reports the fleets the fleet detector found, for GET
	// /api/v1/fleets and the page's fleet panel; nil means fleet detection
	// is off.
	Fleets func() Fleets

	// Config returns the effective configuration with secrets redacted, for
	// GET /api/v1/config. It is encoded with encoding/json. nil serves {}.
	Config func() any

	// Logger receives one Info line per admin mutation and a Warn line per
	// rejected admin token. nil discards.
	Logger *slog.Logger

	// Version is shown on the status page, e.g. "v1.2.0".
	Version string

	// Tracker supplies the per-second figures and latency; main feeds it
	// from every Check. nil shows zeros.
	Tracker *Tracker

	// Mode is "enforce" or "shadow", shown on the page. "" means "enforce".
	Mode string
	// MaxBanTTL is the longest quarantine an admin may ask for in one ban
	// or extension: the quarantine list's own cap, passed in by main. 0
	// means DefaultMaxBanTTL.
	MaxBanTTL time.Duration

	// MaxStreams bounds the concurrent /api/v1/stream clients without the
	// admin token; more get 503. 0 means 64. Clients that present the
	// admin token have AdminStreams places of their own, so a crowd of
	// anonymous viewers cannot lock an operator out.
	MaxStreams int

	// AdminStreams bounds the concurrent streams of admin-token holders,
	// beyond MaxStreams. 0 means 16.
	AdminStreams int

	// ShowIdentities shows identity-header values as they are (with
	// non-printing characters made visible). false, the default, masks
	// them: see mask.go.
	ShowIdentities bool

	// AllowedHosts are the names, beside IP literals, that the Host header
	// may give: exact names, "*.example.com" or "*". nil means
	// ["localhost"]. See hostGuard.
	AllowedHosts []string

	// Warnings reports misconfigurations for the page's banner, at most a
	// handful; it must be cheap, the stream asks every second. nil shows
	// none.
	Warnings func(now time.Time) []Warning

	// BadToken, if not nil, is called for every request refused for a
	// missing or wrong admin token, e.g. to count it in a metric. The log
	// says so at most once per badTokenLogEvery.
	BadToken func()

	// HoneypotURL is the base URL of flowlock-honeypot's records API,
	// read for GET /api/v1/honeypot and the page's "what the quarantined
	// clients went for"; "" leaves both out (404, panel hidden).
	HoneypotURL string
	// Calibration returns what calibration's recorder has seen, for GET
	// /api/v1/calibration (admin token required: its route classes come
	// from request paths). It is encoded with encoding/json. nil leaves the
	// route out (404).
	Calibration func() any
}

// server holds what the handlers need. Its fields are set by New; the hub
// is safe for concurrent use.
type server struct {
	backend    Backend
	adminOn    bool
	tokenSum   [sha256.Size]byte // SHA-256 of the admin token; see authorized
	ipv6Prefix int
	names      bool // Options.NameIdentities
	now        func() time.Time
	metrics    http.Handler
	ready      func() error
	config     func() any
	log        *slog.Logger
	version    string
	tracker    *Tracker
	mode       string
	maxBan     time.Duration
	sharing    func() Sharing
	// fingerprints lists the flagged TLS fingerprints; nil without
	// fingerprint evidence (Options.Fingerprints).
	fingerprints func(now time.Time) []FlaggedFingerprint
	fleets       func() Fleets // Options.Fleets, may be nil
	hub          *hub
	seq          atomic.Uint64 // numbers stream events
	showNames    bool          // Options.ShowIdentities
	aliases      aliases       // shown texts of name identities; see mask.go
	hosts        hostGuard
	badToken     func()      // Options.BadToken, never nil
	badLog       logThrottle // WARN lines for rejected tokens

	warnings func(time.Time) []Warning // Options.Warnings, may be nil
	honeypot *honeypotReader           // nil without Options.HoneypotURL

	calibration func() any // Options.Calibration, may be nil
}

// Handler is the dashboard's HTTP handler. Its owner calls Close when
// shutting down, before http.Server.Shutdown: an event stream is never
// idle, so Shutdown would otherwise wait out its whole timeout.
type Handler struct {
	http.Handler
	hub *hub
}

// Close ends every event stream and refuses new ones.
func (h *Handler) Close() { h.hub.close() }

// New returns the HTTP handler for flowlock-authz's HTTP address, with the
// routes listed in routes.go and security headers on every response. It
// panics if opts.Backend is nil, a wiring bug found at startup.
func New(opts Options) *Handler {
	s := newServer(opts)
	return &Handler{Handler: s.handler(), hub: s.hub}
}

// newServer applies the defaults of opts.
func newServer(opts Options) *server {
	if opts.Backend == nil {
		panic("dashboard: Options.Backend is nil")
	}
	s := &server{
		backend:    opts.Backend,
		adminOn:    opts.AdminToken != "",
		tokenSum:   sha256.Sum256([]byte(opts.AdminToken)),
		ipv6Prefix: opts.IPv6Prefix,
		names:      opts.NameIdentities,
		now:        opts.Now,
		metrics:    opts.Metrics,
		ready:      opts.Ready,
		sharing:    opts.Sharing,

		fingerprints: opts.Fingerprints,
		config:       opts.Config,
		log:          opts.Logger,
		version:      opts.Version,
		tracker:      opts.Tracker,
		mode:         opts.Mode,
		maxBan:       opts.MaxBanTTL,
		showNames:    opts.ShowIdentities,
		badToken:     opts.BadToken,
		warnings:     opts.Warnings,
		fleets:       opts.Fleets,
		honeypot:     newHoneypotReader(opts.HoneypotURL),
	}
	allowed := opts.AllowedHosts
	if allowed == nil {
		allowed = []string{"localhost"}
	}
	s.hosts = newHostGuard(allowed)
	if s.badToken == nil {
		s.badToken = func() {}
	}
	if s.ipv6Prefix == 0 {
		s.ipv6Prefix = 64
	}
	if s.maxBan <= 0 {
		s.maxBan = DefaultMaxBanTTL
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.ready == nil {
		s.ready = func() error { return nil }
	}
	if s.config == nil {
		s.config = func() any { return struct{}{} }
	}
	s.calibration = opts.Calibration
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "dashboard")
	if s.version == "" {
		s.version = "dev"
	}
	if s.mode == "" {
		s.mode = "enforce"
	}
	maxStreams := opts.MaxStreams
	if maxStreams <= 0 {
		maxStreams = defaultMaxStreams
	}
	adminStreams := opts.AdminStreams
	if adminStreams <= 0 {
		adminStreams = defaultAdminStreams
	}
	s.hub = newHub(s.snapshotEvent, maxStreams, streamInterval)
	s.hub.maxAdmin = adminStreams
	return s
}

// handler returns the routes of routes.go behind the security headers.
func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	s.addRoutes(mux)
	return securityHeaders(s.hosts.wrap(apiErrorsAsJSON(mux)))
}
