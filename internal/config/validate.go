package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Bounds checked by Validate.
const (
	maxXFFTrustedHops = 10
	minQuarantineTTL  = time.Second
	maxFactor         = 10
	maxConfirm        = 20
	minMaxClients     = 1_000
	minFleetMembers   = 5 // fewer is a coincidence, not a fleet
	maxFleetMembers   = 100_000
	maxMaxClients     = 100_000_000
	maxClockSkew      = time.Hour
	minSweepInterval  = 100 * time.Millisecond
	maxVolumeBurst    = 1_000_000_000
)

// Validate checks every setting and reports all problems at once (joined
// with errors.Join), each named by its flag and environment variable:
//
//	--ipv6-prefix (FLOWLOCK_IPV6_PREFIX): must be 1-128, got 200
//
// It never includes the admin token in an error.
func (c Config) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", label(flag), fmt.Sprintf(format, args...)))
	}

	// Listeners.
	for _, l := range []struct {
		flag, addr string
		optional   bool
	}{
		{"grpc-addr", c.GRPCAddr, false},
		{"http-addr", c.HTTPAddr, false},
		{"forward-auth-addr", c.ForwardAuthAddr, true},
	} {
		if l.addr == "" && l.optional {
			continue
		}
		if err := checkHostPort(l.addr, false); err != nil {
			bad(l.flag, "%v", err)
		}
	}
	checkListenerClash(c, bad)
	checkRedis(&c, bad)

	switch c.Mode {
	case ModeEnforce, ModeShadow:
	default:
		bad("mode", "must be %s or %s, got %q", ModeEnforce, ModeShadow, c.Mode)
	}

	// Admin token. The message may say how long it is, never what it is.
	if tok := c.AdminToken.Reveal(); tok != "" {
		flag := "admin-token"
		if c.AdminTokenFile != "" {
			flag = "admin-token-file"
		}
		if len(tok) < MinAdminTokenLen {
			bad(flag, "token is too short: must be at least %d bytes, got %d", MinAdminTokenLen, len(tok))
		}
		if strings.IndexFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }) >= 0 {
			bad(flag, "token must be printable ASCII without spaces")
		}
	}

	// Identity.
	if c.XFFTrustedHops < 0 || c.XFFTrustedHops > maxXFFTrustedHops {
		bad("xff-trusted-hops", "must be 0-%d, got %d", maxXFFTrustedHops, c.XFFTrustedHops)
	}
	if err := checkIdentityHeader(c.IdentityHeader); err != nil {
		bad("identity-header", "%v", err)
	}
	if c.IPv6Prefix < 1 || c.IPv6Prefix > 128 {
		bad("ipv6-prefix", "must be 1-128, got %d", c.IPv6Prefix)
	}
	checkPrefixes("trusted-proxies", c.TrustedProxies, bad)
	for _, p := range c.TrustedProxies {
		if p.IsValid() && p.Bits() == 0 {
			bad("trusted-proxies", "%s trusts every address, so any client could write its own X-Forwarded-For and detection would stop; list the ranges of your own proxies", p)
		}
	}
	for _, fam := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		// One /0 is reported above; here, ranges that add up to one.
		if in := overlapping(fam, c.TrustedProxies); !slices.ContainsFunc(in, isWhole) && covers(in, fam) {
			bad("trusted-proxies", "%s together trust every %s address, so any client could write its own X-Forwarded-For and detection would stop; list the ranges of your own proxies",
				joinPrefixes(in), familyName(fam))
		}
	}
	for _, h := range c.HTTPAllowedHosts {
		if err := checkAllowedHost(h); err != nil {
			bad("http-allowed-hosts", "%v", err)
		}
	}
	checkPrefixes("allow", c.Allow, bad)
	checkPrefixes("deny", c.Deny, bad)
	inAllow := make(map[netip.Prefix]bool, len(c.Allow))
	for _, p := range c.Allow {
		inAllow[p] = true
	}
	for _, p := range c.Deny {
		if inAllow[p] {
			bad("deny", "%s is also in --allow; a client cannot be both", p)
		}
	}
	for _, p := range c.ExcludePaths {
		switch {
		case !strings.HasPrefix(p, "/"):
			bad("exclude-path", "%q must start with /", p)
		case p == "/":
			bad("exclude-path", `"/" would leave every request untimed; name the routes (pollers, health checks)`)
		}
	}

	// Quarantine.
	if c.QuarantineTTL < minQuarantineTTL {
		bad("quarantine-ttl", "must be at least %s, got %s", minQuarantineTTL, formatDuration(c.QuarantineTTL))
	}
	if c.QuarantineMaxTTL < c.QuarantineTTL {
		bad("quarantine-max-ttl", "must be at least --quarantine-ttl (%s), got %s",
			formatDuration(c.QuarantineTTL), formatDuration(c.QuarantineMaxTTL))
	}
	if !(c.QuarantineFactor >= 1 && c.QuarantineFactor <= maxFactor) { // also refuses NaN
		bad("quarantine-factor", "must be 1-%d, got %v", maxFactor, c.QuarantineFactor)
	}
	if c.StrikeWindow <= 0 {
		bad("strike-window", "must be positive, got %s", formatDuration(c.StrikeWindow))
	}

	// Risk.
	if c.RiskThreshold < 1 || c.RiskThreshold > 100 {
		bad("risk-threshold", "must be 1-100, got %d", c.RiskThreshold)
	}
	riskOK := c.RiskThreshold >= 1 && c.RiskThreshold <= 100
	if c.ChallengeThreshold < 0 || (riskOK && c.ChallengeThreshold >= c.RiskThreshold) || c.ChallengeThreshold > 99 {
		bad("challenge-threshold", "must be 0 or more and below --risk-threshold (%d), got %d",
			c.RiskThreshold, c.ChallengeThreshold)
	}
	if c.Confirm < 1 || c.Confirm > maxConfirm {
		bad("confirm", "must be 1-%d, got %d", maxConfirm, c.Confirm)
	}
	if c.MaxClients < minMaxClients || c.MaxClients > maxMaxClients {
		bad("max-clients", "must be %d-%d, got %d", minMaxClients, maxMaxClients, c.MaxClients)
	}

	// Time.
	if c.ClockSkew < 0 || c.ClockSkew > maxClockSkew {
		bad("clock-skew", "must be 0-%s, got %s", formatDuration(maxClockSkew), formatDuration(c.ClockSkew))
	}
	if c.SweepInterval < minSweepInterval {
		bad("sweep-interval", "must be at least %s, got %s", minSweepInterval, formatDuration(c.SweepInterval))
	}
	if c.ShutdownTimeout <= 0 {
		bad("shutdown-timeout", "must be positive, got %s", formatDuration(c.ShutdownTimeout))
	}
	if c.DrainDelay < 0 || (c.ShutdownTimeout > 0 && c.DrainDelay >= c.ShutdownTimeout) {
		bad("drain-delay", "must be 0 or more and shorter than --shutdown-timeout (%s), got %s",
			formatDuration(c.ShutdownTimeout), formatDuration(c.DrainDelay))
	}
	if c.StateWriteInterval < 0 {
		bad("state-write-interval", "must not be negative, got %s", formatDuration(c.StateWriteInterval))
	}

	// Logging.
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("log-level", "must be debug, info, warn or error, got %q", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("log-format", "must be text or json, got %q", c.LogFormat)
	}

	// Shared state and volume.
	if !(c.VolumeRate >= 0) || math.IsInf(c.VolumeRate, 0) { // also refuses NaN
		bad("volume-rate", "must be a finite number of requests per second, 0 or more, got %v", c.VolumeRate)
	}
	if c.VolumeBurst < 0 || c.VolumeBurst > maxVolumeBurst {
		bad("volume-burst", "must be 0-%d, got %d", maxVolumeBurst, c.VolumeBurst)
	} else if c.VolumeBurst > 0 && c.VolumeRate == 0 {
		bad("volume-burst", "has no effect without --volume-rate; set both or neither")
	}

	checkNetwork(c, bad)
	checkIdentitySources(c, bad)
	checkQuarantineAction(c, bad)

	if c.FleetMinMembers != 0 && (c.FleetMinMembers < minFleetMembers || c.FleetMinMembers > maxFleetMembers) {
		bad("fleet-min-members", "must be 0 (off) or %d-%d, got %d", minFleetMembers, maxFleetMembers, c.FleetMinMembers)
	}
	return errors.Join(errs...)
}

// checkRedis checks the --redis-* settings: every address dialable, the
// prefix free of the braces that would change a key's cluster slot, and no
// Redis setting without --redis-addr.
func checkRedis(c *Config, bad func(flag, format string, args ...any)) {
	if c.RedisAddr == "" {
		for _, s := range []struct {
			flag string
			set  bool
		}{
			{"redis-username", c.RedisUsername != ""},
			{"redis-password-file", c.RedisPasswordFile != ""},
			{"redis-tls", c.RedisTLS},
			{"redis-ca-file", c.RedisCAFile != ""},
		} {
			if s.set {
				bad(s.flag, "has no effect without --redis-addr")
			}
		}
		return
	}
	addrs := c.RedisAddrs()
	if len(addrs) == 0 {
		bad("redis-addr", `must be host:port, e.g. "redis:6379", got %q`, c.RedisAddr)
	}
	if len(addrs) > 64 {
		bad("redis-addr", "at most 64 addresses, got %d", len(addrs))
	}
	for _, a := range addrs {
		if err := checkHostPort(a, true); err != nil {
			bad("redis-addr", "%v", err)
		}
	}
	if c.RedisCAFile != "" && !c.RedisTLS {
		bad("redis-ca-file", "needs --redis-tls")
	}
	if strings.ContainsAny(c.RedisKeyPrefix, "{}") || len(c.RedisKeyPrefix) > 64 {
		bad("redis-key-prefix", "must be at most 64 bytes without { or }, got %q", c.RedisKeyPrefix)
	}
}

// checkHostPort checks a "host:port" address. The port must be numeric; a
// dial address (Redis) needs a host and a port other than 0, a listen
// address may leave the host empty and use port 0.
func checkHostPort(addr string, dial bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if dial {
			return fmt.Errorf(`must be host:port, e.g. "redis:6379", got %q`, addr)
		}
		return fmt.Errorf(`must be host:port, e.g. ":9191" or "127.0.0.1:9191", got %q`, addr)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || (dial && n == 0) {
		lo := 0
		if dial {
			lo = 1
		}
		return fmt.Errorf("port must be a number %d-65535, got %q", lo, port)
	}
	switch {
	case host == "":
		if dial {
			return fmt.Errorf("host must not be empty, got %q", addr)
		}
	case validHost(host):
	default:
		return fmt.Errorf("host %q is not an IP address or host name", host)
	}
	return nil
}

// validHost reports whether h is an IP address (without zone) or a DNS
// host name.
func validHost(h string) bool {
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Zone() == ""
	}
	if len(h) > 253 {
		return false
	}
	for part := range strings.SplitSeq(h, ".") {
		if part == "" || len(part) > 63 || part[0] == '-' || part[len(part)-1] == '-' {
			return false
		}
		for i := range len(part) {
			ch := part[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_') {
				return false
			}
		}
	}
	return true
}

// checkListenerClash reports two listeners configured on the same port
// where their hosts overlap (equal, or one listening on all addresses).
func checkListenerClash(c Config, bad func(flag, format string, args ...any)) {
	type listener struct{ flag, host, port string }
	var ls []listener
	for _, l := range [][2]string{
		{"grpc-addr", c.GRPCAddr}, {"http-addr", c.HTTPAddr}, {"forward-auth-addr", c.ForwardAuthAddr},
	} {
		host, port, err := net.SplitHostPort(l[1])
		if err != nil || port == "0" {
			continue // malformed addresses are reported on their own; port 0 never clashes
		}
		if n, err := strconv.Atoi(port); err == nil {
			port = strconv.Itoa(n) // "09191" is 9191
		}
		if host == "localhost" {
			host = "127.0.0.1" // where Go's listener binds it first
		}
		ls = append(ls, listener{l[0], host, port})
	}
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	for i := range ls {
		for j := range i {
			a, b := ls[j], ls[i]
			if a.port == b.port && (a.host == b.host || wildcard(a.host) || wildcard(b.host)) {
				bad(b.flag, "port %s is already used by --%s", b.port, a.flag)
			}
		}
	}
}

// checkIdentityHeader checks an identity header name: empty, or a
// lowercase HTTP field name that is neither a pseudo-header nor reserved.
func checkIdentityHeader(h string) error {
	switch {
	case h == "":
		return nil
	case strings.HasPrefix(h, ":"):
		return fmt.Errorf("%q is a pseudo-header; name a request header such as x-api-key", h)
	case !isToken(h):
		return fmt.Errorf("%q is not a valid HTTP header name", h)
	case strings.ToLower(h) != h:
		return fmt.Errorf("must be lowercase, as Envoy passes header names: write %q", strings.ToLower(h))
	case strings.HasPrefix(h, "x-flowlock-"):
		return fmt.Errorf("%q is reserved: x-flowlock-* headers are set by Flow Lock and stripped from clients", h)
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2), the syntax
// of a field name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' {
			continue
		}
		if !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(ch)) {
			return false
		}
	}
	return true
}

// checkPrefixes reports invalid or unmasked prefixes in a list built by
// hand rather than by Load, which always normalizes them.
func checkPrefixes(flag string, list []netip.Prefix, bad func(flag, format string, args ...any)) {
	for _, p := range list {
		if !p.IsValid() {
			bad(flag, "holds an invalid prefix")
		} else if p != p.Masked() {
			bad(flag, "%s has host bits set; write %s", p, p.Masked())
		}
	}
}

// overlapping returns the valid prefixes of list that share an address
// with p.
func overlapping(p netip.Prefix, list []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, q := range list {
		if q.IsValid() && q.Overlaps(p) {
			out = append(out, q)
		}
	}
	return out
}

// covers reports whether the union of list holds every address of p. A
// prefix that holds p answers yes; none overlapping it answers no;
// otherwise both halves of p must be covered. Only halves that some prefix
// splits are visited, so the work is at most the prefixes times the
// address bits.
func covers(list []netip.Prefix, p netip.Prefix) bool {
	list = overlapping(p, list)
	if len(list) == 0 {
		return false
	}
	for _, q := range list {
		if q.Bits() <= p.Bits() { // overlaps and is no longer: holds p
			return true
		}
	}
	lo := netip.PrefixFrom(p.Addr(), p.Bits()+1)
	hiAddr := p.Addr().AsSlice()
	hiAddr[p.Bits()/8] |= 0x80 >> (p.Bits() % 8)
	hi, _ := netip.AddrFromSlice(hiAddr)
	return covers(list, lo) && covers(list, netip.PrefixFrom(hi, p.Bits()+1))
}

// isWhole reports whether p is a /0.
func isWhole(p netip.Prefix) bool { return p.Bits() == 0 }

// joinPrefixes writes list the way the flag takes it.
func joinPrefixes(list []netip.Prefix) string {
	s := make([]string, len(list))
	for i, p := range list {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// familyName names the address family of p.
func familyName(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// checkAllowedHost checks one --http-allowed-hosts entry: "*", a host name,
// or "*." and a host name; lowercase, without a port.
func checkAllowedHost(h string) error {
	if h == "*" {
		return nil
	}
	name := strings.TrimPrefix(h, "*.")
	if name == "" || len(name) > 253 || strings.Contains(name, "*") {
		return fmt.Errorf("%q must be a host name, \"*.\" and a host name, or \"*\"", h)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%q is not a host name", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("%q must be a lowercase host name without a port", h)
			}
		}
	}
	return nil
}

// Bounds of the network settings checked by Validate.
const (
	minGRPCMaxRecvBytes     = 4 << 10
	maxGRPCMaxRecvBytes     = 16 << 20
	maxGRPCMaxStreams       = 100_000
	minGRPCHandshakeTimeout = 100 * time.Millisecond
	maxGRPCHandshakeTimeout = time.Minute
	minGRPCKeepaliveTime    = time.Second
	maxConns                = 1_000_000
)

// checkNetwork checks the listeners' limits, allow-lists and TLS files.
func checkNetwork(c Config, bad func(flag, format string, args ...any)) {
	if c.GRPCMaxRecvBytes < minGRPCMaxRecvBytes || c.GRPCMaxRecvBytes > maxGRPCMaxRecvBytes {
		bad("grpc-max-recv-bytes", "must be %d-%d, got %d", minGRPCMaxRecvBytes, maxGRPCMaxRecvBytes, c.GRPCMaxRecvBytes)
	}
	if c.GRPCMaxStreams < 1 || c.GRPCMaxStreams > maxGRPCMaxStreams {
		bad("grpc-max-streams", "must be 1-%d, got %d", maxGRPCMaxStreams, c.GRPCMaxStreams)
	}
	if c.GRPCHandshakeTimeout < minGRPCHandshakeTimeout || c.GRPCHandshakeTimeout > maxGRPCHandshakeTimeout {
		bad("grpc-handshake-timeout", "must be %s-%s, got %s", minGRPCHandshakeTimeout,
			formatDuration(maxGRPCHandshakeTimeout), formatDuration(c.GRPCHandshakeTimeout))
	}
	if c.GRPCIdleTimeout < 0 || (c.GRPCIdleTimeout > 0 && c.GRPCIdleTimeout < time.Second) {
		bad("grpc-idle-timeout", "must be 0 (never) or at least 1s, got %s", formatDuration(c.GRPCIdleTimeout))
	}
	if c.GRPCKeepaliveTime < minGRPCKeepaliveTime {
		bad("grpc-keepalive-time", "must be at least %s, got %s", minGRPCKeepaliveTime, formatDuration(c.GRPCKeepaliveTime))
	}
	if c.GRPCMaxInflight < 1 || c.GRPCMaxInflight > maxConns {
		bad("grpc-max-inflight", "must be 1-%d, got %d", maxConns, c.GRPCMaxInflight)
	}
	if c.GRPCCheckTimeout < minGRPCHandshakeTimeout || c.GRPCCheckTimeout > maxGRPCHandshakeTimeout {
		bad("grpc-check-timeout", "must be %s-%s, got %s", minGRPCHandshakeTimeout,
			formatDuration(maxGRPCHandshakeTimeout), formatDuration(c.GRPCCheckTimeout))
	}
	for _, l := range []struct {
		flag string
		n    int
	}{{"grpc-max-conns", c.GRPCMaxConns}, {"http-max-conns", c.HTTPMaxConns}, {"forward-auth-max-conns", c.ForwardAuthMaxConns}} {
		if l.n < 1 || l.n > maxConns {
			bad(l.flag, "must be 1-%d, got %d", maxConns, l.n)
		}
	}
	checkPrefixes("grpc-allow-peers", c.GRPCAllowPeers, bad)
	checkPrefixes("forward-auth-allow-peers", c.ForwardAuthAllowPeers, bad)
	for _, l := range []struct {
		prefix, cert, key, ca string
	}{
		{"grpc", c.GRPCTLSCert, c.GRPCTLSKey, c.GRPCClientCA},
		{"forward-auth", c.ForwardAuthTLSCert, c.ForwardAuthTLSKey, c.ForwardAuthClientCA},
		{"http", c.HTTPTLSCert, c.HTTPTLSKey, c.HTTPClientCA},
	} {
		switch {
		case l.cert != "" && l.key == "":
			bad(l.prefix+"-tls-key", "must be set with --%s-tls-cert", l.prefix)
		case l.cert == "" && l.key != "":
			bad(l.prefix+"-tls-cert", "must be set with --%s-tls-key", l.prefix)
		}
		if l.ca != "" && l.cert == "" {
			bad(l.prefix+"-client-ca", "needs --%s-tls-cert and --%s-tls-key: client certificates are only asked for over TLS", l.prefix, l.prefix)
		}
	}
	if c.ForwardAuthAddr == "" {
		for flag, set := range map[string]bool{
			"forward-auth-allow-peers": len(c.ForwardAuthAllowPeers) > 0,
			"forward-auth-tls-cert":    c.ForwardAuthTLSCert != "",
		} {
			if set {
				bad(flag, "has no effect without --forward-auth-addr")
			}
		}
	}
}
