// Package config holds the settings of flowlock-authz: one Config struct,
// its defaults, Load (flags, FLOWLOCK_* environment variables and a YAML
// file, in that order of precedence) and Validate.
//
// Only the command imports this package. It translates a Config into the
// options of the domain packages (risk, quarantine, authz), which never
// import config themselves.
//
// Every setting has three spellings, derived from its flag name:
//
//	flag       --quarantine-ttl 10m  (or --quarantine-ttl=10m; one dash works too)
//	env        FLOWLOCK_QUARANTINE_TTL=10m
//	YAML key   quarantine_ttl: 10m
//
// Reference lists them all; Usage prints them for -h.
//
// To add a setting: add a documented Config field, its default in Default,
// a row in the settings table (settings.go) and its checks in Validate, with
// a testdata/bad_*.yaml file per failure mode and a line in good.yaml. The
// flag, env variable, YAML key, Usage, Reference and Redacted follow from
// the table, and TestReferenceMatchesFlagSet fails if a field is unbound.
package config

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/flowlock/flowlock/internal/fleet"
	"github.com/flowlock/flowlock/internal/quarantine"
	"github.com/flowlock/flowlock/internal/risk"
)

// Modes for Config.Mode.
const (
	// ModeEnforce denies quarantined clients.
	ModeEnforce = "enforce"
	// ModeShadow computes, records and logs every decision but always allows.
	ModeShadow = "shadow"
)

// MinAdminTokenLen is the shortest admin token Validate accepts, in bytes.
const MinAdminTokenLen = 16

// Config is the complete configuration of flowlock-authz. Default returns
// the defaults; Load layers a YAML file, the environment and flags on top
// of them and validates the result.
//
// Durations are time.Duration; on the command line, in the environment and
// in the file they are written like "90s", "5m" or "1h30m". Lists accept
// comma-separated values on the command line and in the environment, a
// repeated flag, or a YAML sequence. Address lists hold netip.Prefix values:
// a bare IP becomes a /32 or /128, host bits are masked off, and an
// IPv4-mapped IPv6 prefix (::ffff:192.0.2.0/120) is stored as IPv4
// (192.0.2.0/24).
//
// Printing a Config (fmt, slog, encoding/json) never shows the admin token.
type Config struct {
	// GRPCAddr is the listen address (host:port) of the Envoy ext_authz
	// gRPC server, also serving gRPC health and reflection.
	// Default ":9191". An empty host listens on all interfaces; port 0
	// picks a free port. Must not be empty.
	GRPCAddr string

	// HTTPAddr is the listen address (host:port) of the HTTP server for the
	// dashboard, the admin API, /metrics, /healthz and /readyz.
	// Default "127.0.0.1:8080": reads need no token, so the default keeps
	// them on this machine; containers and Kubernetes set ":8080" so that
	// probes and Prometheus reach the pod (see docs/RATIONALE.md). Must
	// not be empty.
	HTTPAddr string

	// ForwardAuthAddr is the listen address (host:port) of the HTTP
	// forward-auth endpoint (/check) for nginx, Caddy, Traefik and Envoy's
	// HTTP ext_authz. Default "": the listener is off.
	ForwardAuthAddr string

	// ConfigFile is the YAML file the settings were read from (--config or
	// FLOWLOCK_CONFIG). Default "": no file. It cannot be set inside the
	// file itself.
	ConfigFile string

	// Mode is ModeEnforce (deny quarantined clients) or ModeShadow (compute
	// and record everything, always allow). Default "enforce".
	Mode string

	// StateFile is the file the quarantine list is saved to (atomically)
	// and restored from at start. Default "": quarantine lives in memory
	// only and is lost on restart. A relative path in the YAML file is
	// relative to that file's directory.
	StateFile string

	// AdminToken is the bearer token that admin API mutations (ban,
	// release) require: "Authorization: Bearer <token>". It must be at
	// least MinAdminTokenLen bytes of printable ASCII without spaces.
	// Default unset: every mutation is refused. Prefer AdminTokenFile or
	// FLOWLOCK_ADMIN_TOKEN, since flags show up in process listings.
	AdminToken Secret

	// AdminTokenFile is a file holding the admin token; surrounding
	// whitespace is trimmed. Load reads it and stores the token in
	// AdminToken, so after Load both are set. Setting both admin-token and
	// admin-token-file is an error. Default "": no file. A relative path in
	// the YAML file is relative to that file's directory.
	AdminTokenFile string

	// TrustedProxies are the proxies whose X-Forwarded-For entries are
	// believed: the client is the rightmost entry not in this list (and
	// X-Real-IP/X-Forwarded-For are honoured only from these peers on the
	// forward-auth listener). Default empty: no proxy is trusted by address.
	TrustedProxies []netip.Prefix

	// XFFTrustedHops is how many rightmost X-Forwarded-For entries are added
	// by the operator's own proxies and are skipped when looking for the
	// client, in addition to TrustedProxies. Range 0-10. Default 0: none.
	XFFTrustedHops int

	// IdentityHeader is a lowercase request header (for example an API key
	// or a JWT subject that Envoy forwards) whose value identifies the
	// client; when present it takes precedence over the address. Pseudo
	// headers and x-flowlock-* headers are refused. Default "": clients are
	// identified by address only.
	IdentityHeader string

	// IPv6Prefix is the prefix length, in bits, that IPv6 clients are
	// grouped by: one subscriber usually owns a whole /64. Range 1-128;
	// 128 means no grouping. Default 64.
	IPv6Prefix int

	// QuarantineTTL is how long a first quarantine lasts. At least 1s.
	// Default 5m.
	QuarantineTTL time.Duration

	// QuarantineMaxTTL caps the escalated quarantine of a repeat offender.
	// Must be at least QuarantineTTL. Default 24h.
	QuarantineMaxTTL time.Duration

	// QuarantineFactor multiplies the quarantine time for each further
	// strike within StrikeWindow: TTL, TTL·f, TTL·f², … up to
	// QuarantineMaxTTL. Range 1-10; 1 means no escalation. Default 2.
	QuarantineFactor float64

	// StrikeWindow is how long a quarantine counts as a strike for
	// escalation after it was imposed. Must be positive. Default 24h.
	StrikeWindow time.Duration

	// RiskThreshold is the risk score (0-100) at or above which a client is
	// quarantined, once confirmed over Confirm consecutive evaluations.
	// Range 1-100. Default 80.
	RiskThreshold int

	// ChallengeThreshold is the risk score at or above which a client is
	// flagged as suspect (counted, logged, marked for the upstream) without
	// being quarantined. Must be below RiskThreshold. Default 60; 0 turns
	// this tier off.
	ChallengeThreshold int

	// Confirm is how many consecutive evaluations at or above
	// RiskThreshold it takes to quarantine a client. Range 1-20; 1 acts on
	// the first. Default 3.
	Confirm int

	// MaxClients is the hard cap on identities with timing state in
	// memory; past it the least valuable entries are evicted (never a
	// quarantined or high-risk one). Memory grows linearly with it (see
	// internal/risk for the bytes per identity). Range 1000-100000000.
	// Default 1000000.
	MaxClients int

	// Allow lists clients that are never timed or quarantined.
	// Default empty.
	Allow []netip.Prefix

	// Deny lists clients that are always denied. A prefix may not appear in
	// both Allow and Deny. Default empty.
	Deny []netip.Prefix

	// ExcludePaths are request path prefixes left out of timing (pollers,
	// health checks, notification endpoints); each starts with "/".
	// Default empty.
	ExcludePaths []string

	// ClockSkew is the largest accepted difference between Envoy's request
	// time (attributes.request.time) and the local clock; beyond it the
	// local clock is used. Range 0-1h; 0 means Envoy's time is never used.
	// Default 5s.
	ClockSkew time.Duration

	// SweepInterval is how often expired quarantine entries and idle timing
	// state are swept (expiry itself is checked on every read). At least
	// 100ms. Default 10s.
	SweepInterval time.Duration

	// DrainDelay is how long, after SIGTERM, the service keeps answering
	// Checks while its gRPC health says NOT_SERVING, so that Envoy's health
	// checks and Kubernetes' readiness probe move traffic away before the
	// listener closes. It is part of ShutdownTimeout and must be shorter.
	// 0 stops at once. Default 5s.
	DrainDelay time.Duration

	// ShutdownTimeout bounds the whole shutdown after SIGTERM: the drain
	// delay, then the graceful stop of the gRPC and HTTP servers; then
	// connections are closed and the state is written. Must be positive.
	// Default 15s.
	ShutdownTimeout time.Duration

	// StateWriteInterval is the coalescing window for StateFile writes:
	// changes within it are saved together. Must not be negative; 0 writes
	// after every change. Default 1s.
	StateWriteInterval time.Duration

	// LogLevel is the lowest level logged: "debug", "info", "warn" or
	// "error". Default "info".
	LogLevel string

	// LogFormat is "text" (for people) or "json" (for log collectors).
	// Default "text".
	LogFormat string

	// Demo runs built-in simulated traffic (humans and bots) through the
	// engine so the dashboard moves without Envoy. Default false.
	Demo bool

	// VolumeRate is the sustained request rate, in requests per second per
	// identity, of the GCRA volume limit, separate from timing detection.
	// Must not be negative. Default 0: no volume limit.
	VolumeRate float64

	// VolumeBurst is how many requests above VolumeRate an identity may
	// send at once. Must not be negative, and needs VolumeRate. Default 0,
	// which means 10 times VolumeRate (at least 1).
	VolumeBurst int

	// RedisAddr turns on state shared between replicas: one Redis (or
	// Valkey) node, or the seed nodes of a Redis Cluster, as
	// "host:port[,host:port...]". "" keeps all state in this process.
	RedisAddr string
	// RedisUsername is the ACL user; "" uses the default user.
	RedisUsername string
	// RedisPasswordFile is a file holding the Redis password (whitespace
	// trimmed); Load reads it into RedisPassword.
	RedisPasswordFile string
	// RedisPassword is never set directly: only from RedisPasswordFile.
	RedisPassword Secret
	// RedisTLS connects with TLS, checked against the system roots or
	// RedisCAFile.
	RedisTLS bool
	// RedisCAFile is a PEM file of the CAs that sign Redis's certificate.
	RedisCAFile string
	// RedisKeyPrefix starts every key Flow Lock writes. Default
	// "flowlock:".
	RedisKeyPrefix string

	// ShowIdentities shows identity-header values as they are on the
	// dashboard and in the admin API. Default false: they are masked as a
	// keyed hash and their last characters ("key:3f9a1c0d7b2e…Xk2e"),
	// because they are usually credentials. Logs mask them always.
	ShowIdentities bool

	// HTTPAllowedHosts are the host names the HTTP server answers to, as
	// the Host header gives them: exact names, "*.example.com" for any
	// name below example.com, or "*" for any. IP literals are always
	// accepted, and /healthz, /readyz and /metrics answer any Host, for
	// probes and scrapers. A request for any other name is refused, which
	// stops a DNS-rebinding page in an operator's browser from reading
	// the API. Default ["localhost"].
	HTTPAllowedHosts []string

	// GRPCMaxRecvBytes is the largest gRPC message the server reads; a
	// larger one is refused with RESOURCE_EXHAUSTED before its body is
	// buffered. Real CheckRequests are 1-2 KB, and Envoy caps request
	// headers at 60 KiB by default. Range 4096-16777216. Default 262144.
	GRPCMaxRecvBytes int

	// GRPCMaxStreams is how many gRPC calls one connection may have in
	// flight (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS); Envoy opens another
	// connection past it. Range 1-100000. Default 256.
	GRPCMaxStreams int

	// GRPCHandshakeTimeout bounds how long a new gRPC connection may take
	// to finish its TLS handshake and send the HTTP/2 preface before it is
	// closed. Range 100ms-1m. Default 5s.
	GRPCHandshakeTimeout time.Duration

	// GRPCIdleTimeout closes a gRPC connection that has had no call in
	// flight for this long (with a GOAWAY, so a client reconnects
	// cleanly). 0 never closes idle connections. Default 5m.
	GRPCIdleTimeout time.Duration

	// GRPCKeepaliveTime is how long a gRPC connection may be quiet before
	// the server pings it; a ping not answered within as long again closes
	// it, so dead peers do not hold connections. At least 1s. Default 30s.
	GRPCKeepaliveTime time.Duration

	// GRPCMaxInflight caps the gRPC calls in flight across all
	// connections. Each may hold up to GRPCMaxRecvBytes while its message
	// arrives, so together they bound that memory (1024 x 256 KiB = 256
	// MiB); a call past the cap is refused with RESOURCE_EXHAUSTED, which
	// Envoy fails open. A Check takes well under a millisecond, so 1024 in
	// flight is hundreds of thousands a second. Range 1-1000000.
	// Default 1024.
	GRPCMaxInflight int

	// GRPCCheckTimeout is the deadline given to a Check that arrives
	// without one (Envoy sends grpc-timeout, its own ext_authz timeout), so
	// a client that starts a large message and stalls frees its slot and
	// memory. Range 100ms-1m. Default 10s.
	GRPCCheckTimeout time.Duration

	// GRPCMaxConns caps the open connections of the gRPC listener. At the
	// cap a new connection closes the oldest one that has not completed
	// its handshake (TLS, or the HTTP/2 preface); if every open connection
	// has, the one that has read nothing for longest, if for at least a
	// second (listen.IdleEvictAfter); otherwise the new one is closed. The
	// caps of the three listeners are lowered at start to fit the
	// process's descriptor limit. A connection costs about 10 KB resident
	// and 90 KB of address space before it says anything; Envoy opens one
	// or two per worker thread.
	// Range 1-1000000. Default 1024.
	GRPCMaxConns int

	// HTTPMaxConns caps the open connections of the HTTP listener, with
	// the same rule as GRPCMaxConns. Its budget is separate, so a flood of
	// the gRPC port leaves health checks and the dashboard answering.
	// Range 1-1000000. Default 256.
	HTTPMaxConns int

	// ForwardAuthMaxConns caps the open connections of the forward-auth
	// listener, with the same rule. Range 1-1000000. Default 1024.
	ForwardAuthMaxConns int

	// GRPCAllowPeers, when not empty, lists the only peers that may
	// connect to the gRPC listener; other connections are closed at
	// accept. Default empty: any peer.
	GRPCAllowPeers []netip.Prefix

	// ForwardAuthAllowPeers is GRPCAllowPeers for the forward-auth
	// listener. Default empty: any peer.
	ForwardAuthAllowPeers []netip.Prefix

	// GRPCTLSCert and GRPCTLSKey are PEM files of the gRPC listener's
	// certificate chain and key; set both or neither. They are reloaded
	// when they change, without a restart. Default "": plaintext.
	GRPCTLSCert, GRPCTLSKey string

	// GRPCClientCA is a PEM file of the CAs that sign the client
	// certificates the gRPC listener requires (mutual TLS). Needs
	// GRPCTLSCert. Default "": no client certificate is asked for.
	GRPCClientCA string

	// ForwardAuthTLSCert, ForwardAuthTLSKey and ForwardAuthClientCA are
	// the same for the forward-auth listener. Default "": plaintext.
	ForwardAuthTLSCert, ForwardAuthTLSKey, ForwardAuthClientCA string

	// HTTPTLSCert, HTTPTLSKey and HTTPClientCA are the same for the HTTP
	// listener. A client CA there locks out probes that present no
	// certificate (the kubelet's). Default "": plaintext.
	HTTPTLSCert, HTTPTLSKey, HTTPClientCA string

	// IdentityJWTClaim is the claim of a JWT that Envoy's jwt_authn filter
	// verified whose value identifies the client, read from the
	// CheckRequest's metadata_context, never from a header: "sub", or a
	// dotted path into nested claims such as "act.sub". It wins over
	// IdentityHeader and the address. Default "": no claim is read.
	IdentityJWTClaim string

	// IdentityJWTPayloadKey is the payload_in_metadata key of the
	// jwt_authn providers, under which the verified payload sits in the
	// envoy.filters.http.jwt_authn namespace. Default "payload" (Istio's).
	IdentityJWTPayloadKey string

	// FingerprintHeader is a lowercase request header in which the proxy
	// passes the client's TLS fingerprint (JA4, or JA3), set by the proxy
	// itself (%TLS_JA4_FINGERPRINT%). Only its hash is kept. Default "":
	// no fingerprint.
	FingerprintHeader string

	// Identity says what a client scored by address is keyed by:
	// "address" (default), "fingerprint" or "address+fingerprint". The
	// last two need FingerprintHeader.
	Identity string

	// FingerprintFlagAfter flags a fingerprint once this many distinct
	// identities carrying it were quarantined within FingerprintWindow;
	// new identities with a flagged fingerprint are confirmed on their
	// first evaluation over the threshold instead of Confirm. Range 0-50;
	// 0 turns the evidence off. Default 5. Needs FingerprintHeader.
	FingerprintFlagAfter int

	// FingerprintWindow is how recent those quarantines must be. Range
	// 1m-24h. Default 1h.
	FingerprintWindow time.Duration

	// FingerprintCalmLimit is how many calm identities (enough requests,
	// scored below the challenge band, never quarantined), seen calm within
	// four FingerprintWindows, may carry a fingerprint before it cannot be
	// flagged: a fingerprint common among people is no evidence, and people
	// keep being seen. Range 1-200. Default 20.
	FingerprintCalmLimit int
	// FleetMinMembers is the smallest group of identities sharing one
	// schedule or script that internal/fleet calls a fleet and
	// quarantines (reason "fleet"). 0 turns fleet detection off. Range 0
	// or 5-100000. Default 20.
	FleetMinMembers int

	// QuarantineAction is how enforce mode answers a client that timing
	// quarantined: "deny" (403 with Retry-After), "honeypot" (allow with
	// x-flowlock-route: honeypot, for the proxy to route to a decoy
	// upstream; see deploy/envoy.yaml) or "tarpit" (the 403 after
	// TarpitDelay). The deny list and the volume limit always deny.
	// Default "deny".
	QuarantineAction string

	// TarpitDelay is how long "tarpit" holds each answer. It must stay
	// below the proxy's timeout for the check (Envoy's ext_authz timeout,
	// 250ms in deploy/envoy.yaml; nginx's proxy_read_timeout): a check
	// that times out fails open and lets the bot through. A Check also
	// ends its hold a fifth of the time left (at least 20ms) before the
	// deadline Envoy sends with it. Range
	// 10ms-10s, and below grpc-check-timeout; at most 800ms with
	// forward-auth, whose proxies in deploy/ give up after 1s (a
	// forward-auth hold ends 200ms before that in any case). Default 200ms.
	TarpitDelay time.Duration

	// TarpitMaxHeld caps the answers held at once across the gRPC and
	// forward-auth listeners; past it a quarantined client is answered at
	// once, so the tarpit cannot take the service's capacity. Range 1 to
	// half of grpc-max-inflight and half of grpc-max-streams (a proxy may
	// send every Check over one connection). Default 64.
	TarpitMaxHeld int

	// HoneypotURL is the base URL of the decoy's records API
	// (flowlock-honeypot --api-addr), which the dashboard reads to show
	// what quarantined clients went for. Default "": not shown.
	HoneypotURL string
}

// RedisAddrs returns RedisAddr split at commas, nil when it is "".
func (c Config) RedisAddrs() []string {
	if c.RedisAddr == "" {
		return nil
	}
	var out []string
	for _, a := range strings.Split(c.RedisAddr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Default returns the built-in defaults. They pass Validate.
func Default() Config {
	return Config{
		GRPCAddr:           ":9191",
		HTTPAddr:           "127.0.0.1:8080",
		Mode:               ModeEnforce,
		XFFTrustedHops:     0,
		IPv6Prefix:         64,
		QuarantineTTL:      quarantine.DefaultBaseTTL,
		QuarantineMaxTTL:   quarantine.DefaultMaxTTL,
		QuarantineFactor:   quarantine.DefaultFactor,
		StrikeWindow:       quarantine.DefaultStrikeWindow,
		RiskThreshold:      risk.DefaultThreshold,
		ChallengeThreshold: risk.DefaultChallengeThreshold,
		Confirm:            risk.DefaultConfirm,
		MaxClients:         risk.DefaultMaxClients,
		ClockSkew:          5 * time.Second,
		SweepInterval:      10 * time.Second,
		ShutdownTimeout:    15 * time.Second,
		DrainDelay:         5 * time.Second,
		StateWriteInterval: time.Second,
		LogLevel:           "info",
		LogFormat:          "text",
		RedisKeyPrefix:     "flowlock:",
		HTTPAllowedHosts:   []string{"localhost"},

		GRPCMaxRecvBytes:     256 << 10,
		GRPCMaxStreams:       256,
		GRPCHandshakeTimeout: 5 * time.Second,
		GRPCIdleTimeout:      5 * time.Minute,
		GRPCKeepaliveTime:    30 * time.Second,
		GRPCMaxInflight:      1024,
		GRPCCheckTimeout:     10 * time.Second,
		GRPCMaxConns:         1024,
		HTTPMaxConns:         256,
		ForwardAuthMaxConns:  1024,

		IdentityJWTPayloadKey: "payload",
		Identity:              IdentityAddress,
		FingerprintFlagAfter:  5,
		FingerprintWindow:     time.Hour,
		FingerprintCalmLimit:  20,
		FleetMinMembers:       fleet.DefaultMinMembers,
		QuarantineAction:      "deny",
		TarpitDelay:           200 * time.Millisecond,
		TarpitMaxHeld:         64,
	}
}

// LogValue logs c as the effective settings keyed by flag name, in
// Reference order, with secrets redacted.
func (c Config) LogValue() slog.Value {
	attrs := make([]slog.Attr, 0, len(settings))
	for i := range settings {
		s := &settings[i]
		attrs = append(attrs, slog.Any(s.name, s.redacted(&c)))
	}
	return slog.GroupValue(attrs...)
}

// Secret is a string that is never printed: every fmt verb, slog and
// encoding/json show "(set)" or "(unset)" instead. The zero Secret is unset.
// Call Reveal to use the value.
type Secret struct {
	v string
}

// NewSecret returns a Secret holding s; an empty s gives an unset Secret.
func NewSecret(s string) Secret { return Secret{v: s} }

// Reveal returns the secret value. Compare it with crypto/subtle, and never
// log or return it in an error.
func (s Secret) Reveal() string { return s.v }

// IsSet reports whether s holds a non-empty value.
func (s Secret) IsSet() bool { return s.v != "" }

// String returns "(set)" or "(unset)".
func (s Secret) String() string {
	if s.IsSet() {
		return "(set)"
	}
	return "(unset)"
}

// GoString returns the same as String, so %#v does not show the value.
func (s Secret) GoString() string { return s.String() }

// Format makes every fmt verb (%v, %+v, %#v, %s, %q, %x, %d, …) print the
// same as String.
func (s Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, s.String()) }

// LogValue logs s as "(set)" or "(unset)".
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText encodes s as "(set)" or "(unset)", for encoding/json and
// other text encoders. There is deliberately no UnmarshalText.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
