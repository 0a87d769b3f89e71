package config

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Setting describes one setting for documentation: the README table and
// the flag reference are generated from Reference.
type Setting struct {
	// Flag is the flag name without dashes, e.g. "grpc-addr".
	Flag string
	// Env is the environment variable, e.g. "FLOWLOCK_GRPC_ADDR".
	Env string
	// YAML is the key in the --config file, e.g. "grpc_addr"; "" when the
	// setting cannot be set in the file (only "config" itself).
	YAML string
	// Default is the default as it would be written on the command line;
	// "" for an empty string or list.
	Default string
	// Help says what the setting does, in one line.
	Help string
}

// setting is one entry of the settings table, which drives flags, the
// environment, the YAML file, Usage, Reference and Redacted alike. To add a
// setting, add a Config field, its default in Default, a row here and a
// check in Validate.
type setting struct {
	name    string            // flag name, kebab-case
	metavar string            // value placeholder in Usage; "" for booleans
	help    string            // one line, no final period
	secret  bool              // never shown: not in errors, Usage or Redacted
	path    bool              // a file path: relative paths in the YAML file are relative to it
	noFile  bool              // cannot be set in the YAML file
	field   func(*Config) any // pointer to the Config field
}

// settings is the table of every setting, in the order Usage and Reference
// list them.
var settings = []setting{
	{name: "grpc-addr", metavar: "ADDR", help: "listen address of the Envoy ext_authz gRPC server",
		field: func(c *Config) any { return &c.GRPCAddr }},
	{name: "http-addr", metavar: "ADDR", help: "listen address of the dashboard, admin API, /metrics and health endpoints",
		field: func(c *Config) any { return &c.HTTPAddr }},
	{name: "forward-auth-addr", metavar: "ADDR", help: `listen address of the HTTP forward-auth endpoint /check; "" turns it off`,
		field: func(c *Config) any { return &c.ForwardAuthAddr }},
	{name: "config", metavar: "FILE", help: "YAML file with settings (keys are flag names in snake_case)", noFile: true,
		field: func(c *Config) any { return &c.ConfigFile }},
	{name: "mode", metavar: "MODE", help: "enforce (deny quarantined clients) or shadow (record decisions, always allow)",
		field: func(c *Config) any { return &c.Mode }},
	{name: "state-file", metavar: "FILE", help: `file the quarantine list is saved to and restored from; "" keeps it in memory only`, path: true,
		field: func(c *Config) any { return &c.StateFile }},
	{name: "admin-token", metavar: "TOKEN", help: "bearer token for admin API mutations, at least 16 bytes; unset refuses all mutations", secret: true,
		field: func(c *Config) any { return &c.AdminToken }},
	{name: "admin-token-file", metavar: "FILE", help: "file holding the admin token (whitespace trimmed); excludes --admin-token", path: true,
		field: func(c *Config) any { return &c.AdminTokenFile }},
	{name: "trusted-proxies", metavar: "CIDR,...", help: "proxies whose X-Forwarded-For entries are believed (CIDRs or IPs; repeatable)",
		field: func(c *Config) any { return &c.TrustedProxies }},
	{name: "xff-trusted-hops", metavar: "N", help: "rightmost X-Forwarded-For entries added by your own proxies, skipped to find the client (0-10)",
		field: func(c *Config) any { return &c.XFFTrustedHops }},
	{name: "identity-header", metavar: "NAME", help: `request header whose value identifies the client (API key, JWT subject), any case; "" uses the address`,
		field: func(c *Config) any { return &c.IdentityHeader }},
	{name: "ipv6-prefix", metavar: "BITS", help: "prefix length IPv6 clients are grouped by (1-128)",
		field: func(c *Config) any { return &c.IPv6Prefix }},
	{name: "quarantine-ttl", metavar: "DURATION", help: "length of a first quarantine (at least 1s)",
		field: func(c *Config) any { return &c.QuarantineTTL }},
	{name: "quarantine-max-ttl", metavar: "DURATION", help: "cap on the escalated quarantine of repeat offenders (at least quarantine-ttl)",
		field: func(c *Config) any { return &c.QuarantineMaxTTL }},
	{name: "quarantine-factor", metavar: "X", help: "quarantine time multiplier per repeated strike (1-10; 1 = no escalation)",
		field: func(c *Config) any { return &c.QuarantineFactor }},
	{name: "strike-window", metavar: "DURATION", help: "how long a quarantine counts as a strike for escalation",
		field: func(c *Config) any { return &c.StrikeWindow }},
	{name: "risk-threshold", metavar: "SCORE", help: "risk score (0-100) that quarantines a client once confirmed (1-100)",
		field: func(c *Config) any { return &c.RiskThreshold }},
	{name: "challenge-threshold", metavar: "SCORE", help: "risk score that flags a client as suspect without quarantine (below risk-threshold; 0 = off)",
		field: func(c *Config) any { return &c.ChallengeThreshold }},
	{name: "confirm", metavar: "N", help: "consecutive evaluations at or above risk-threshold needed to quarantine (1-20)",
		field: func(c *Config) any { return &c.Confirm }},
	{name: "max-clients", metavar: "N", help: "hard cap on identities with timing state in memory (1000-100000000)",
		field: func(c *Config) any { return &c.MaxClients }},
	{name: "allow", metavar: "CIDR,...", help: "clients never quarantined, though still timed and shown (CIDRs or IPs; repeatable)",
		field: func(c *Config) any { return &c.Allow }},
	{name: "deny", metavar: "CIDR,...", help: "clients always denied (CIDRs or IPs; repeatable)",
		field: func(c *Config) any { return &c.Deny }},
	{name: "exclude-path", metavar: "PREFIX,...", help: "request path prefixes left out of timing, e.g. /healthz (repeatable)",
		field: func(c *Config) any { return &c.ExcludePaths }},
	{name: "clock-skew", metavar: "DURATION", help: "largest accepted difference between Envoy's request time and the local clock (0 = always local)",
		field: func(c *Config) any { return &c.ClockSkew }},
	{name: "sweep-interval", metavar: "DURATION", help: "how often expired quarantine entries and idle state are swept (at least 100ms)",
		field: func(c *Config) any { return &c.SweepInterval }},
	{name: "drain-delay", metavar: "DURATION", help: "after SIGTERM, keep answering while health says NOT_SERVING so proxies move away (part of shutdown-timeout)",
		field: func(c *Config) any { return &c.DrainDelay }},
	{name: "shutdown-timeout", metavar: "DURATION", help: "whole shutdown budget after SIGTERM: drain delay, then graceful stop, then connections are closed",
		field: func(c *Config) any { return &c.ShutdownTimeout }},
	{name: "state-write-interval", metavar: "DURATION", help: "coalescing window for state-file writes (0 = write on every change)",
		field: func(c *Config) any { return &c.StateWriteInterval }},
	{name: "log-level", metavar: "LEVEL", help: "debug, info, warn or error",
		field: func(c *Config) any { return &c.LogLevel }},
	{name: "log-format", metavar: "FORMAT", help: "text or json",
		field: func(c *Config) any { return &c.LogFormat }},
	{name: "demo", help: "run built-in simulated traffic so the dashboard moves without Envoy",
		field: func(c *Config) any { return &c.Demo }},
	{name: "volume-rate", metavar: "RPS", help: "requests per second per identity allowed by the volume limit (0 = off)",
		field: func(c *Config) any { return &c.VolumeRate }},
	{name: "volume-burst", metavar: "N", help: "requests above volume-rate allowed at once (0 = 10 x volume-rate)",
		field: func(c *Config) any { return &c.VolumeBurst }},
	{name: "redis-addr", metavar: "HOST:PORT,...", help: `share detection and quarantine between replicas through Redis: one node, or a Redis Cluster's seed nodes; "" keeps state in this process`,
		field: func(c *Config) any { return &c.RedisAddr }},
	{name: "redis-username", metavar: "NAME", help: "Redis ACL user name",
		field: func(c *Config) any { return &c.RedisUsername }},
	{name: "redis-password-file", metavar: "FILE", help: "file holding the Redis password (whitespace trimmed; never logged)", path: true,
		field: func(c *Config) any { return &c.RedisPasswordFile }},
	{name: "redis-tls", help: "connect to Redis with TLS",
		field: func(c *Config) any { return &c.RedisTLS }},
	{name: "redis-ca-file", metavar: "FILE", help: "PEM file of the CAs that sign Redis's certificate (with --redis-tls)", path: true,
		field: func(c *Config) any { return &c.RedisCAFile }},
	{name: "redis-key-prefix", metavar: "PREFIX", help: "prefix of every Redis key Flow Lock writes (no braces)",
		field: func(c *Config) any { return &c.RedisKeyPrefix }},
	{name: "show-identities", help: "show identity-header values in clear on the dashboard and in the admin API (default: masked; logs always mask)",
		field: func(c *Config) any { return &c.ShowIdentities }},
	{name: "http-allowed-hosts", metavar: "HOST,...", help: `Host names the HTTP server answers to ("*.example.com", "*" for any); IP literals always; probes and /metrics any`,
		field: func(c *Config) any { return &c.HTTPAllowedHosts }},
	{name: "grpc-max-recv-bytes", metavar: "BYTES", help: "largest gRPC message accepted; real CheckRequests are a few KB (4096-16777216)",
		field: func(c *Config) any { return &c.GRPCMaxRecvBytes }},
	{name: "grpc-max-streams", metavar: "N", help: "concurrent gRPC streams per connection; Envoy opens another connection past it (1-100000)",
		field: func(c *Config) any { return &c.GRPCMaxStreams }},
	{name: "grpc-handshake-timeout", metavar: "DURATION", help: "time a new gRPC connection has to finish TLS and the HTTP/2 preface (100ms-1m)",
		field: func(c *Config) any { return &c.GRPCHandshakeTimeout }},
	{name: "grpc-idle-timeout", metavar: "DURATION", help: "close a gRPC connection with no call for this long (0 = never)",
		field: func(c *Config) any { return &c.GRPCIdleTimeout }},
	{name: "grpc-keepalive-time", metavar: "DURATION", help: "ping a quiet gRPC connection after this long and close it if the ping is not answered within as long again (at least 1s)",
		field: func(c *Config) any { return &c.GRPCKeepaliveTime }},
	{name: "grpc-max-inflight", metavar: "N", help: "gRPC calls in flight across all connections, each holding up to grpc-max-recv-bytes; past it calls are refused (1-1000000)",
		field: func(c *Config) any { return &c.GRPCMaxInflight }},
	{name: "grpc-check-timeout", metavar: "DURATION", help: "deadline of a Check that brings none (Envoy sends its own), so a stalled call frees its memory (100ms-1m)",
		field: func(c *Config) any { return &c.GRPCCheckTimeout }},
	{name: "grpc-max-conns", metavar: "N", help: "open gRPC connections; at the cap the oldest one without a completed handshake is closed, or else the one idle longest if idle 1s (1-1000000)",
		field: func(c *Config) any { return &c.GRPCMaxConns }},
	{name: "http-max-conns", metavar: "N", help: "open connections to the dashboard, API, metrics and health listener, a budget of its own (1-1000000)",
		field: func(c *Config) any { return &c.HTTPMaxConns }},
	{name: "forward-auth-max-conns", metavar: "N", help: "open connections to the forward-auth listener (1-1000000)",
		field: func(c *Config) any { return &c.ForwardAuthMaxConns }},
	{name: "grpc-allow-peers", metavar: "CIDR,...", help: "only these peers may connect to the gRPC listener, others are closed at accept (CIDRs or IPs; repeatable; empty = any)",
		field: func(c *Config) any { return &c.GRPCAllowPeers }},
	{name: "forward-auth-allow-peers", metavar: "CIDR,...", help: "only these peers may connect to the forward-auth listener (CIDRs or IPs; repeatable; empty = any)",
		field: func(c *Config) any { return &c.ForwardAuthAllowPeers }},
	{name: "grpc-tls-cert", metavar: "FILE", help: "PEM certificate chain of the gRPC listener, reloaded when it changes; needs grpc-tls-key", path: true,
		field: func(c *Config) any { return &c.GRPCTLSCert }},
	{name: "grpc-tls-key", metavar: "FILE", help: "PEM private key of grpc-tls-cert", path: true,
		field: func(c *Config) any { return &c.GRPCTLSKey }},
	{name: "grpc-client-ca", metavar: "FILE", help: "PEM CAs whose client certificates the gRPC listener requires (mutual TLS); needs grpc-tls-cert", path: true,
		field: func(c *Config) any { return &c.GRPCClientCA }},
	{name: "forward-auth-tls-cert", metavar: "FILE", help: "PEM certificate chain of the forward-auth listener, reloaded when it changes; needs forward-auth-tls-key", path: true,
		field: func(c *Config) any { return &c.ForwardAuthTLSCert }},
	{name: "forward-auth-tls-key", metavar: "FILE", help: "PEM private key of forward-auth-tls-cert", path: true,
		field: func(c *Config) any { return &c.ForwardAuthTLSKey }},
	{name: "forward-auth-client-ca", metavar: "FILE", help: "PEM CAs whose client certificates the forward-auth listener requires (mutual TLS)", path: true,
		field: func(c *Config) any { return &c.ForwardAuthClientCA }},
	{name: "http-tls-cert", metavar: "FILE", help: "PEM certificate chain of the HTTP listener (dashboard, API, health), reloaded when it changes; needs http-tls-key", path: true,
		field: func(c *Config) any { return &c.HTTPTLSCert }},
	{name: "http-tls-key", metavar: "FILE", help: "PEM private key of http-tls-cert", path: true,
		field: func(c *Config) any { return &c.HTTPTLSKey }},
	{name: "http-client-ca", metavar: "FILE", help: "PEM CAs whose client certificates the HTTP listener requires (mutual TLS; kubelet probes have none)", path: true,
		field: func(c *Config) any { return &c.HTTPClientCA }},
	{name: "identity-jwt-claim", metavar: "CLAIM", help: `claim of a JWT verified by Envoy's jwt_authn (metadata_context, never a header) that identifies the client, e.g. sub or act.sub; "" reads none`,
		field: func(c *Config) any { return &c.IdentityJWTClaim }},
	{name: "identity-jwt-payload-key", metavar: "KEY", help: "payload_in_metadata key of the jwt_authn providers, under envoy.filters.http.jwt_authn",
		field: func(c *Config) any { return &c.IdentityJWTPayloadKey }},
	{name: "fingerprint-header", metavar: "NAME", help: `request header in which the proxy passes the client's TLS fingerprint (JA4 or JA3); only its hash is kept; "" reads none`,
		field: func(c *Config) any { return &c.FingerprintHeader }},
	{name: "identity", metavar: "KEY", help: "what a client scored by address is keyed by: address, fingerprint or address+fingerprint (the last two need fingerprint-header)",
		field: func(c *Config) any { return &c.Identity }},
	{name: "fingerprint-flag-after", metavar: "N", help: "flag a fingerprint after N distinct identities carrying it were quarantined within fingerprint-window: new ones confirm faster, never banned (0 = off; 0-50)",
		field: func(c *Config) any { return &c.FingerprintFlagAfter }},
	{name: "fingerprint-window", metavar: "DURATION", help: "how recent the quarantines that flag a fingerprint must be (1m-24h)",
		field: func(c *Config) any { return &c.FingerprintWindow }},
	{name: "fingerprint-calm-limit", metavar: "N", help: "identities seen calm with a fingerprint (within 4 fingerprint windows) that keep it from being flagged (1-200)",
		field: func(c *Config) any { return &c.FingerprintCalmLimit }},
	{name: "fleet-min-members", metavar: "N", help: "quarantine fleets: N or more identities sharing one schedule or script (reason fleet; 0 = off)",
		field: func(c *Config) any { return &c.FleetMinMembers }},
	{name: "quarantine-action", metavar: "ACTION", help: "how enforce mode answers quarantined clients: deny (403), honeypot (allow with x-flowlock-route: honeypot for the proxy to route to a decoy) or tarpit (403 after tarpit-delay)",
		field: func(c *Config) any { return &c.QuarantineAction }},
	{name: "tarpit-delay", metavar: "DURATION", help: "how long tarpit holds an answer; keep it below the proxy's check timeout, or the check fails open (10ms-10s; at most 800ms with forward-auth)",
		field: func(c *Config) any { return &c.TarpitDelay }},
	{name: "tarpit-max-held", metavar: "N", help: "answers the tarpit holds at once; past it quarantined clients are answered at once (1 to half of grpc-max-inflight and of grpc-max-streams)",
		field: func(c *Config) any { return &c.TarpitMaxHeld }},
	{name: "honeypot-url", metavar: "URL", help: `base URL of flowlock-honeypot's records API, for the dashboard's view of what quarantined clients went for; "" hides it`,
		field: func(c *Config) any { return &c.HoneypotURL }},
}

// envName returns the environment variable of a flag name.
func envName(flag string) string {
	return "FLOWLOCK_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// yamlKey returns the YAML key of a flag name.
func yamlKey(flag string) string { return strings.ReplaceAll(flag, "-", "_") }

// env returns the environment variable of s.
func (s *setting) env() string { return envName(s.name) }

// label names a setting in validation errors by its flag and env twin.
func label(flag string) string { return "--" + flag + " (" + envName(flag) + ")" }

// isList reports whether s holds a list.
func (s *setting) isList() bool {
	switch s.field(&Config{}).(type) {
	case *[]netip.Prefix, *[]string:
		return true
	}
	return false
}

// isBool reports whether s is a boolean (a flag without a value).
func (s *setting) isBool() bool {
	_, ok := s.field(&Config{}).(*bool)
	return ok
}

// set parses raw into the field of s in c. A list is replaced, or extended
// when appendList is true; raw may hold several comma-separated items.
func (s *setting) set(c *Config, raw string, appendList bool) error {
	switch p := s.field(c).(type) {
	case *string:
		*p = raw
	case *Secret:
		*p = NewSecret(raw)
	case *int:
		n, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				return errors.New("integer out of range")
			}
			return errors.New("must be an integer")
		}
		*p = n
	case *float64:
		f, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return errors.New("must be a finite number")
		}
		*p = f
	case *bool:
		b, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return errors.New("must be true or false")
		}
		*p = b
	case *time.Duration:
		d, err := time.ParseDuration(strings.TrimSpace(raw))
		if err != nil {
			return errors.New(`must be a duration such as "90s", "5m" or "1h30m"`)
		}
		*p = d
	case *[]netip.Prefix:
		var list []netip.Prefix
		for _, item := range splitList(raw) {
			pfx, err := parsePrefix(item)
			if err != nil {
				return err
			}
			list = append(list, pfx)
		}
		if appendList {
			list = append(*p, list...)
		}
		*p = list
	case *[]string:
		list := splitList(raw)
		if appendList {
			list = append(*p, list...)
		}
		*p = list
	default:
		panic(fmt.Sprintf("config: setting %q has unsupported type %T", s.name, p))
	}
	return nil
}

// splitList splits a comma-separated list, trimming spaces and dropping
// empty items, so "a, b," is [a b] and "" is an empty list.
func splitList(raw string) []string {
	var out []string
	for item := range strings.SplitSeq(raw, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// parsePrefix parses a CIDR or a bare IP address as written in an address
// list. A bare address becomes a /32 or /128, host bits are masked off, and
// an IPv4-mapped IPv6 address or prefix of at least /96 becomes IPv4.
// Zones are refused.
func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zones are not allowed", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	p = p.Masked()
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p, nil
}

// format returns the value of s in c as it would be written on the command
// line. A secret formats as "(set)" or "(unset)".
func (s *setting) format(c *Config) string {
	switch p := s.field(c).(type) {
	case *string:
		return *p
	case *Secret:
		return p.String()
	case *int:
		return strconv.Itoa(*p)
	case *float64:
		return strconv.FormatFloat(*p, 'g', -1, 64)
	case *bool:
		return strconv.FormatBool(*p)
	case *time.Duration:
		return formatDuration(*p)
	case *[]netip.Prefix:
		parts := make([]string, len(*p))
		for i, pfx := range *p {
			parts[i] = pfx.String()
		}
		return strings.Join(parts, ",")
	case *[]string:
		return strings.Join(*p, ",")
	default:
		panic(fmt.Sprintf("config: setting %q has unsupported type %T", s.name, p))
	}
}

// redacted returns the value of s in c for the admin API: strings, numbers
// and booleans as they are, durations as strings, lists as []string (never
// nil), and secrets as "(set)" or "(unset)".
func (s *setting) redacted(c *Config) any {
	switch p := s.field(c).(type) {
	case *string:
		return *p
	case *int:
		return *p
	case *float64:
		return *p
	case *bool:
		return *p
	case *[]netip.Prefix:
		out := make([]string, len(*p))
		for i, pfx := range *p {
			out[i] = pfx.String()
		}
		return out
	case *[]string:
		return append([]string{}, *p...)
	default: // Secret, time.Duration
		return s.format(c)
	}
}

// formatDuration formats d like time.Duration.String without the trailing
// zero units: "5m" rather than "5m0s", "24h" rather than "24h0m0s".
func formatDuration(d time.Duration) string {
	out := d.String()
	if strings.HasSuffix(out, "m0s") {
		out = out[:len(out)-2]
	}
	if strings.HasSuffix(out, "h0m") {
		out = out[:len(out)-2]
	}
	return out
}

// Reference returns every setting in the order Usage lists them, for
// generating and checking the README configuration table.
func Reference() []Setting {
	def := Default()
	out := make([]Setting, 0, len(settings))
	for i := range settings {
		s := &settings[i]
		r := Setting{Flag: s.name, Env: s.env(), YAML: yamlKey(s.name), Help: s.help}
		if s.noFile {
			r.YAML = ""
		}
		if !s.secret {
			r.Default = s.format(&def)
		}
		out = append(out, r)
	}
	return out
}

// Usage writes the flag reference that -h prints: every flag with its
// value, help, environment variable and default.
func Usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("Flags (each also set by env FLOWLOCK_<NAME> or by a snake_case key in the\n")
	b.WriteString("--config YAML file; flags beat env beat file beat defaults; lists take\n")
	b.WriteString("comma-separated values or a repeated flag):\n")
	for _, r := range Reference() {
		b.WriteString("\n  --")
		b.WriteString(r.Flag)
		if s := lookupFlag(r.Flag); s.metavar != "" {
			b.WriteString(" " + s.metavar)
		}
		b.WriteString("\n        " + r.Help + "\n        env " + r.Env)
		if r.Default != "" {
			fmt.Fprintf(&b, ", default %q", r.Default)
		}
		b.WriteString("\n")
	}
	_, _ = io.WriteString(w, b.String())
}

// lookupFlag returns the setting of a flag name, or nil.
func lookupFlag(name string) *setting {
	for i := range settings {
		if settings[i].name == name {
			return &settings[i]
		}
	}
	return nil
}

// lookupYAML returns the setting of a YAML key, or nil. The config setting
// has no YAML key.
func lookupYAML(key string) *setting {
	for i := range settings {
		if s := &settings[i]; !s.noFile && yamlKey(s.name) == key {
			return s
		}
	}
	return nil
}

// Redacted returns the effective settings for the admin API
// (/api/v1/config), keyed by flag name. Secrets show as "(set)" or
// "(unset)", durations as strings like "5m", lists as []string.
func (c Config) Redacted() map[string]any {
	m := make(map[string]any, len(settings))
	for i := range settings {
		s := &settings[i]
		m[s.name] = s.redacted(&c)
	}
	return m
}
