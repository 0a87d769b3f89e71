package config

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// env returns a getenv function backed by a map.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// diffConfig lists the settings that differ between got and want, or "".
func diffConfig(got, want Config) string {
	var b strings.Builder
	for i := range settings {
		s := &settings[i]
		g, w := s.format(&got), s.format(&want)
		if s.secret {
			g, w = got.AdminToken.Reveal(), want.AdminToken.Reveal()
		}
		if g != w {
			fmt.Fprintf(&b, "\n  %s: got %q, want %q", s.name, g, w)
		}
	}
	if b.Len() == 0 && !reflect.DeepEqual(got, want) {
		fmt.Fprintf(&b, "\n  got  %#v\n  want %#v", got, want)
	}
	return b.String()
}

func TestDefault(t *testing.T) {
	def := Default()
	if err := def.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v, want nil", err)
	}
	got, err := Load(nil, nil)
	if err != nil {
		t.Fatalf("Load(nil, nil) error: %v", err)
	}
	if d := diffConfig(got, def); d != "" {
		t.Errorf("Load(nil, nil) differs from Default():%s", d)
	}
	tests := []struct {
		flag string
		want any
	}{
		{"grpc-addr", ":9191"},
		{"http-addr", "127.0.0.1:8080"},
		{"forward-auth-addr", ""},
		{"config", ""},
		{"mode", "enforce"},
		{"state-file", ""},
		{"admin-token", "(unset)"},
		{"admin-token-file", ""},
		{"trusted-proxies", []string{}},
		{"xff-trusted-hops", 0},
		{"identity-header", ""},
		{"ipv6-prefix", 64},
		{"quarantine-ttl", "5m"},
		{"quarantine-max-ttl", "24h"},
		{"quarantine-factor", 2.0},
		{"strike-window", "24h"},
		{"risk-threshold", 80},
		{"challenge-threshold", 60},
		{"confirm", 3},
		{"max-clients", 1_000_000},
		{"allow", []string{}},
		{"deny", []string{}},
		{"exclude-path", []string{}},
		{"clock-skew", "5s"},
		{"sweep-interval", "10s"},
		{"drain-delay", "5s"},
		{"shutdown-timeout", "15s"},
		{"state-write-interval", "1s"},
		{"log-level", "info"},
		{"log-format", "text"},
		{"demo", false},
		{"volume-rate", 0.0},
		{"volume-burst", 0},
		{"redis-addr", ""},
		{"redis-username", ""},
		{"redis-password-file", ""},
		{"redis-tls", false},
		{"redis-ca-file", ""},
		{"redis-key-prefix", "flowlock:"},
		{"show-identities", false},
		{"http-allowed-hosts", []string{"localhost"}},
		{"grpc-max-recv-bytes", 262144},
		{"grpc-max-streams", 256},
		{"grpc-handshake-timeout", "5s"},
		{"grpc-idle-timeout", "5m"},
		{"grpc-keepalive-time", "30s"},
		{"grpc-max-inflight", 1024},
		{"grpc-check-timeout", "10s"},
		{"grpc-max-conns", 1024},
		{"http-max-conns", 256},
		{"forward-auth-max-conns", 1024},
		{"grpc-allow-peers", []string{}},
		{"forward-auth-allow-peers", []string{}},
		{"grpc-tls-cert", ""},
		{"grpc-tls-key", ""},
		{"grpc-client-ca", ""},
		{"forward-auth-tls-cert", ""},
		{"forward-auth-tls-key", ""},
		{"forward-auth-client-ca", ""},
		{"http-tls-cert", ""},
		{"http-tls-key", ""},
		{"http-client-ca", ""},
		{"identity-jwt-claim", ""},
		{"identity-jwt-payload-key", "payload"},
		{"fingerprint-header", ""},
		{"identity", "address"},
		{"fingerprint-flag-after", 5},
		{"fingerprint-window", "1h"},
		{"fingerprint-calm-limit", 20},
		{"fleet-min-members", 20},
		{"quarantine-action", "deny"},
		{"tarpit-delay", "200ms"},
		{"tarpit-max-held", 64},
		{"honeypot-url", ""},
	}
	if len(tests) != len(settings) {
		t.Errorf("test lists %d settings, the table has %d", len(tests), len(settings))
	}
	red := def.Redacted()
	for _, tc := range tests {
		t.Run(tc.flag, func(t *testing.T) {
			if got := red[tc.flag]; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("default %s = %#v, want %#v", tc.flag, got, tc.want)
			}
		})
	}
}

func TestLoadGoodFile(t *testing.T) {
	got, err := Load([]string{"--config", "testdata/good.yaml"}, nil)
	if err != nil {
		t.Fatalf("Load(good.yaml) error: %v", err)
	}
	want := Config{
		GRPCAddr:           "127.0.0.1:19191",
		HTTPAddr:           "127.0.0.1:18080",
		ForwardAuthAddr:    "127.0.0.1:18081",
		ConfigFile:         "testdata/good.yaml",
		Mode:               ModeShadow,
		StateFile:          filepath.Join("testdata", "state", "quarantine.json"),
		AdminToken:         NewSecret("file-token-0123456789abcdef"),
		TrustedProxies:     []netip.Prefix{mustPrefix("10.0.0.0/8"), mustPrefix("192.0.2.1/32"), mustPrefix("198.51.100.0/24")},
		XFFTrustedHops:     2,
		IdentityHeader:     "x-api-key",
		IPv6Prefix:         56,
		QuarantineTTL:      10 * time.Minute,
		QuarantineMaxTTL:   48 * time.Hour,
		QuarantineFactor:   1.5,
		StrikeWindow:       12 * time.Hour,
		RiskThreshold:      85,
		ChallengeThreshold: 50,
		Confirm:            4,
		MaxClients:         50_000,
		Allow:              []netip.Prefix{mustPrefix("203.0.113.0/24")},
		Deny:               []netip.Prefix{mustPrefix("198.51.100.7/32"), mustPrefix("2001:db8::/32")},
		ExcludePaths:       []string{"/healthz", "/poll"},
		ClockSkew:          2 * time.Second,
		SweepInterval:      30 * time.Second,
		ShutdownTimeout:    20 * time.Second,
		DrainDelay:         3 * time.Second,
		StateWriteInterval: 0,
		LogLevel:           "debug",
		LogFormat:          "json",
		Demo:               true,
		VolumeRate:         2.5,
		VolumeBurst:        40,
		RedisAddr:          "redis-a:6379, redis-b:6380",
		RedisUsername:      "flowlock",
		RedisPasswordFile:  filepath.Join("testdata", "secrets", "redis-password"),
		RedisPassword:      NewSecret("redis-test-password"),
		RedisTLS:           true,
		RedisCAFile:        filepath.Join("testdata", "secrets", "redis-ca.pem"),
		RedisKeyPrefix:     "fl-test:",
		ShowIdentities:     true,
		HTTPAllowedHosts:   []string{"flowlock.example.com", "*.internal.example"},

		GRPCMaxRecvBytes:      65536,
		GRPCMaxStreams:        64,
		GRPCHandshakeTimeout:  2 * time.Second,
		GRPCIdleTimeout:       0,
		GRPCKeepaliveTime:     time.Minute,
		GRPCMaxInflight:       512,
		GRPCCheckTimeout:      3 * time.Second,
		GRPCMaxConns:          2000,
		HTTPMaxConns:          100,
		ForwardAuthMaxConns:   3000,
		GRPCAllowPeers:        []netip.Prefix{mustPrefix("10.1.0.0/16")},
		ForwardAuthAllowPeers: []netip.Prefix{mustPrefix("10.2.0.0/16")},
		GRPCTLSCert:           filepath.Join("testdata", "tls", "grpc.crt"),
		GRPCTLSKey:            filepath.Join("testdata", "tls", "grpc.key"),
		GRPCClientCA:          filepath.Join("testdata", "tls", "envoy-ca.pem"),
		ForwardAuthTLSCert:    filepath.Join("testdata", "tls", "fa.crt"),
		ForwardAuthTLSKey:     filepath.Join("testdata", "tls", "fa.key"),
		ForwardAuthClientCA:   filepath.Join("testdata", "tls", "proxy-ca.pem"),
		HTTPTLSCert:           filepath.Join("testdata", "tls", "http.crt"),
		HTTPTLSKey:            filepath.Join("testdata", "tls", "http.key"),
		HTTPClientCA:          filepath.Join("testdata", "tls", "ops-ca.pem"),

		IdentityJWTClaim:      "act.sub",
		IdentityJWTPayloadKey: "verified_jwt",
		FingerprintHeader:     "x-ja4",
		Identity:              IdentityAddressFingerprint,
		FingerprintFlagAfter:  3,
		FingerprintWindow:     30 * time.Minute,
		FingerprintCalmLimit:  50,
		FleetMinMembers:       50,
		QuarantineAction:      "tarpit",
		TarpitDelay:           150 * time.Millisecond,
		TarpitMaxHeld:         32,
		HoneypotURL:           "http://127.0.0.1:8091",
	}
	if d := diffConfig(got, want); d != "" {
		t.Errorf("Load(good.yaml) differs:%s", d)
	}
	// good.yaml must set every setting a file can set, so that the whole
	// decoding path is exercised.
	for i := range settings {
		s := &settings[i]
		if s.noFile || s.name == "admin-token-file" { // excludes admin_token, tested on its own
			continue
		}
		def := Default()
		if s.format(&got) == s.format(&def) {
			t.Errorf("good.yaml leaves %s at its default", yamlKey(s.name))
		}
	}
}

// mustPrefix parses a prefix literal of a test table.
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// TestPrecedence checks that each layer beats the next: flags > env > file
// > defaults, for scalars and lists alike.
func TestPrecedence(t *testing.T) {
	const file = "testdata/good.yaml" // mode shadow, ipv6_prefix 56, quarantine_ttl 10m, allow [203.0.113.0/24], demo true
	tests := []struct {
		name string
		args []string
		env  map[string]string
		flag string // setting to check, by flag name
		want any    // its Redacted value
	}{
		{"default", nil, nil, "ipv6-prefix", 64},
		{"file beats default", []string{"--config", file}, nil, "ipv6-prefix", 56},
		{"env beats default", nil, map[string]string{"FLOWLOCK_IPV6_PREFIX": "48"}, "ipv6-prefix", 48},
		{"env beats file", []string{"--config", file}, map[string]string{"FLOWLOCK_IPV6_PREFIX": "48"}, "ipv6-prefix", 48},
		{"flag beats env", []string{"--ipv6-prefix", "96"}, map[string]string{"FLOWLOCK_IPV6_PREFIX": "48"}, "ipv6-prefix", 96},
		{"flag beats env and file", []string{"--config", file, "--ipv6-prefix=96"}, map[string]string{"FLOWLOCK_IPV6_PREFIX": "48"}, "ipv6-prefix", 96},
		{"flag after file flag beats file", []string{"--ipv6-prefix=96", "--config", file}, nil, "ipv6-prefix", 96},
		{"empty env is unset", []string{"--config", file}, map[string]string{"FLOWLOCK_MODE": ""}, "mode", "shadow"},

		{"duration env beats file", []string{"--config", file}, map[string]string{"FLOWLOCK_QUARANTINE_TTL": "7m"}, "quarantine-ttl", "7m"},
		{"duration flag beats env", []string{"-quarantine-ttl", "90s"}, map[string]string{"FLOWLOCK_QUARANTINE_TTL": "7m"}, "quarantine-ttl", "1m30s"},
		{"bool env beats file", []string{"--config", file}, map[string]string{"FLOWLOCK_DEMO": "false"}, "demo", false},
		{"bool flag beats env", []string{"--demo"}, map[string]string{"FLOWLOCK_DEMO": "0"}, "demo", true},
		{"bool flag =false beats file", []string{"--config", file, "--demo=false"}, nil, "demo", false},

		{"list from file", []string{"--config", file}, nil, "allow", []string{"203.0.113.0/24"}},
		{"list env replaces file", []string{"--config", file}, map[string]string{"FLOWLOCK_ALLOW": "10.0.0.0/8, 192.0.2.7"}, "allow", []string{"10.0.0.0/8", "192.0.2.7/32"}},
		{"list flag replaces env", []string{"--allow", "198.51.100.0/24"}, map[string]string{"FLOWLOCK_ALLOW": "10.0.0.0/8"}, "allow", []string{"198.51.100.0/24"}},
		{"list flag replaces file", []string{"--config", file, "--allow", "198.51.100.0/24"}, nil, "allow", []string{"198.51.100.0/24"}},
		{"repeated list flag appends", []string{"--allow", "10.0.0.0/8", "--allow=192.0.2.0/24,2001:db8::1"}, nil, "allow", []string{"10.0.0.0/8", "192.0.2.0/24", "2001:db8::1/128"}},
		{"empty list flag clears file list", []string{"--config", file, "--allow="}, nil, "allow", []string{}},
		{"header name lowercased", []string{"--identity-header", "X-Api-Key"}, nil, "identity-header", "x-api-key"},
		{"header name from env lowercased", nil, map[string]string{"FLOWLOCK_IDENTITY_HEADER": "X-User"}, "identity-header", "x-user"},
		{"string list flag", []string{"--exclude-path", "/healthz", "--exclude-path", "/poll,/events"}, nil, "exclude-path", []string{"/healthz", "/poll", "/events"}},

		{"config from env", nil, map[string]string{"FLOWLOCK_CONFIG": file}, "mode", "shadow"},
		{"config flag beats env", []string{"--config", file}, map[string]string{"FLOWLOCK_CONFIG": "testdata/missing.yaml"}, "config", file},
		{"empty config flag disables env file", []string{"--config="}, map[string]string{"FLOWLOCK_CONFIG": "testdata/missing.yaml"}, "mode", "enforce"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(tc.args, env(tc.env))
			if err != nil {
				t.Fatalf("Load(%q) error: %v", tc.args, err)
			}
			if got := c.Redacted()[tc.flag]; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Load(%q, %v): %s = %#v, want %#v", tc.args, tc.env, tc.flag, got, tc.want)
			}
		})
	}
}

// TestBadFiles loads every testdata/bad_*.yaml. Each file names the
// failure it holds in "# want: TEXT" lines, all of which must appear in the
// error, and may name a "# secret: TEXT" that must not.
func TestBadFiles(t *testing.T) {
	paths, err := filepath.Glob("testdata/bad_*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no testdata/bad_*.yaml files (%v)", err)
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".yaml"), func(t *testing.T) {
			wants, secrets := fixtureComments(t, path)
			if len(wants) == 0 {
				t.Fatalf("%s has no '# want:' line", path)
			}
			_, err := Load([]string{"--config", path}, nil)
			if err == nil {
				t.Fatalf("Load(%s) succeeded, want an error", path)
			}
			for _, w := range wants {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load(%s) error:\n%v\nwant it to contain:\n%s", path, err, w)
				}
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("Load(%s) error shows the secret %q:\n%v", path, s, err)
				}
			}
		})
	}
}

// fixtureComments returns the "# want:" and "# secret:" lines of a file.
func fixtureComments(t *testing.T, path string) (wants, secrets []string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if w, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
			wants = append(wants, w)
		}
		if s, ok := strings.CutPrefix(sc.Text(), "# secret: "); ok {
			secrets = append(secrets, s)
		}
	}
	return wants, secrets
}

// TestValidate covers what a file cannot express: configs built by hand
// (main could), and the joining of several problems.
func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string // all must appear; nil means valid
	}{
		{"default", func(*Config) {}, nil},
		{"port 0 listeners", func(c *Config) { c.GRPCAddr, c.HTTPAddr, c.ForwardAuthAddr = ":0", ":0", "127.0.0.1:0" }, nil},
		{"ipv6 listener", func(c *Config) { c.HTTPAddr = "[::1]:8080" }, nil},
		{"distinct hosts same port", func(c *Config) { c.GRPCAddr, c.HTTPAddr = "127.0.0.1:9000", "127.0.0.2:9000" }, nil},
		{"listener clash leading zero", func(c *Config) { c.ForwardAuthAddr = "localhost:08080" }, []string{"--forward-auth-addr (FLOWLOCK_FORWARD_AUTH_ADDR): port 8080 is already used by --http-addr"}},
		{"empty http addr", func(c *Config) { c.HTTPAddr = "" }, []string{"--http-addr (FLOWLOCK_HTTP_ADDR): must be host:port"}},
		{"listener with zone", func(c *Config) { c.GRPCAddr = "[fe80::1%eth0]:9191" }, []string{"--grpc-addr (FLOWLOCK_GRPC_ADDR): host \"fe80::1%eth0\" is not an IP address or host name"}},
		{"token ok", func(c *Config) { c.AdminToken = NewSecret("0123456789abcdef") }, nil},
		{"token from file is not a conflict", func(c *Config) {
			c.AdminToken, c.AdminTokenFile = NewSecret("0123456789abcdef"), "/run/secrets/token"
		}, nil},
		{"unmasked prefix", func(c *Config) { c.Allow = []netip.Prefix{mustPrefix("10.1.2.3/8")} }, []string{"--allow (FLOWLOCK_ALLOW): 10.1.2.3/8 has host bits set; write 10.0.0.0/8"}},
		{"invalid prefix", func(c *Config) { c.TrustedProxies = []netip.Prefix{{}} }, []string{"--trusted-proxies (FLOWLOCK_TRUSTED_PROXIES): holds an invalid prefix"}},
		{"overlap is not sameness", func(c *Config) {
			c.Allow, c.Deny = []netip.Prefix{mustPrefix("10.0.0.0/8")}, []netip.Prefix{mustPrefix("10.1.0.0/16")}
		}, nil},
		{"NaN factor", func(c *Config) { c.QuarantineFactor = math.NaN() }, []string{"--quarantine-factor (FLOWLOCK_QUARANTINE_FACTOR): must be 1-10, got NaN"}},
		{"factor below 1", func(c *Config) { c.QuarantineFactor = 0.5 }, []string{"--quarantine-factor (FLOWLOCK_QUARANTINE_FACTOR): must be 1-10, got 0.5"}},
		{"infinite volume rate", func(c *Config) { c.VolumeRate = math.Inf(1) }, []string{"--volume-rate (FLOWLOCK_VOLUME_RATE)"}},
		{"challenge tier off", func(c *Config) { c.ChallengeThreshold = 0 }, nil},
		{"bad risk alone", func(c *Config) { c.RiskThreshold = 0 }, []string{"--risk-threshold (FLOWLOCK_RISK_THRESHOLD): must be 1-100, got 0"}},
		{"negative challenge", func(c *Config) { c.ChallengeThreshold = -1 }, []string{"--challenge-threshold (FLOWLOCK_CHALLENGE_THRESHOLD)"}},
		{"clock skew zero", func(c *Config) { c.ClockSkew = 0 }, nil},
		{"clock skew too large", func(c *Config) { c.ClockSkew = 2 * time.Hour }, []string{"--clock-skew (FLOWLOCK_CLOCK_SKEW): must be 0-1h, got 2h"}},
		{"volume burst with rate", func(c *Config) { c.VolumeRate, c.VolumeBurst = 5, 50 }, nil},
		{"mutual TLS on every listener", func(c *Config) {
			c.ForwardAuthAddr = "127.0.0.1:0"
			c.GRPCTLSCert, c.GRPCTLSKey, c.GRPCClientCA = "g.crt", "g.key", "ca.pem"
			c.ForwardAuthTLSCert, c.ForwardAuthTLSKey, c.ForwardAuthClientCA = "f.crt", "f.key", "ca.pem"
			c.HTTPTLSCert, c.HTTPTLSKey, c.HTTPClientCA = "h.crt", "h.key", "ca.pem"
		}, nil},
		{"idle timeout off", func(c *Config) { c.GRPCIdleTimeout = 0 }, nil},
		{"forward-auth TLS without its listener", func(c *Config) { c.ForwardAuthTLSCert, c.ForwardAuthTLSKey = "f.crt", "f.key" },
			[]string{"--forward-auth-tls-cert (FLOWLOCK_FORWARD_AUTH_TLS_CERT): has no effect without --forward-auth-addr"}},
		{"every problem reported", func(c *Config) {
			c.IPv6Prefix, c.Mode, c.LogLevel, c.Confirm = 200, "block", "trace", 0
		}, []string{
			"--ipv6-prefix (FLOWLOCK_IPV6_PREFIX): must be 1-128, got 200",
			"--mode (FLOWLOCK_MODE)",
			"--log-level (FLOWLOCK_LOG_LEVEL)",
			"--confirm (FLOWLOCK_CONFIRM)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.modify(&c)
			err := c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v\nwant it to contain %q", err, w)
				}
			}
			if n := len(strings.Split(err.Error(), "\n")); n != len(tc.want) {
				t.Errorf("Validate() reported %d problems, want %d:\n%v", n, len(tc.want), err)
			}
		})
	}
}

func TestFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"--grpc-adr", ":1"}, "command line: unknown flag --grpc-adr (did you mean --grpc-addr?)"},
		{"unknown flag with underscores", []string{"--ipv6_prefix=56"}, "command line: unknown flag --ipv6_prefix (did you mean --ipv6-prefix?)"},
		{"unknown flag far from any", []string{"--colour"}, "command line: unknown flag --colour"},
		{"bad integer", []string{"--ipv6-prefix", "sixty"}, `--ipv6-prefix: invalid value "sixty": must be an integer`},
		{"huge integer", []string{"--confirm=99999999999999999999"}, `--confirm: invalid value "99999999999999999999": integer out of range`},
		{"bad duration", []string{"--quarantine-ttl", "300"}, `--quarantine-ttl: invalid value "300": must be a duration`},
		{"bad number", []string{"--volume-rate", "NaN"}, `--volume-rate: invalid value "NaN": must be a finite number`},
		{"bad bool", []string{"--demo=maybe"}, `--demo: invalid value "maybe": must be true or false`},
		{"bad cidr in list", []string{"--deny", "10.0.0.0/8,300.1.1.1"}, `--deny: invalid value "10.0.0.0/8,300.1.1.1": "300.1.1.1" is not an IP address or CIDR`},
		{"missing value", []string{"--grpc-addr"}, "command line: --grpc-addr needs a value"},
		{"stray positional", []string{"--demo", "serve"}, `command line: unexpected argument "serve"`},
		{"stray after flags", []string{"--mode", "shadow", "trace.jsonl", "--demo"}, `command line: unexpected argument "trace.jsonl"`},
		{"stray after --", []string{"--", "--demo"}, `command line: unexpected argument "--demo"`},
		{"bool with separate value", []string{"--demo", "false"}, `command line: unexpected argument "false" (write --demo=false)`},
		{"validation after parsing", []string{"--ipv6-prefix", "200"}, "--ipv6-prefix (FLOWLOCK_IPV6_PREFIX): must be 1-128, got 200"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.args, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load(%q) error = %v\nwant it to contain %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestEnvErrors(t *testing.T) {
	_, err := Load(nil, env(map[string]string{
		"FLOWLOCK_IPV6_PREFIX":     "wide",
		"FLOWLOCK_CLOCK_SKEW":      "5",
		"FLOWLOCK_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local",
		"FLOWLOCK_ADMIN_TOKEN":     "env-secret-token-0123456789", // valid, must not show up
	}))
	if err == nil {
		t.Fatal("Load with bad env succeeded")
	}
	for _, w := range []string{
		`FLOWLOCK_IPV6_PREFIX: invalid value "wide": must be an integer`,
		`FLOWLOCK_CLOCK_SKEW: invalid value "5": must be a duration`,
		`FLOWLOCK_TRUSTED_PROXIES: invalid value "10.0.0.0/8,proxy.local": "proxy.local" is not an IP address or CIDR`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error = %v\nwant it to contain %q", err, w)
		}
	}
	if strings.Contains(err.Error(), "env-secret-token") {
		t.Errorf("error shows the admin token: %v", err)
	}
}

func TestEnvAndFileErrorsTogether(t *testing.T) {
	_, err := Load([]string{"--config", "testdata/bad_type_int.yaml"}, env(map[string]string{"FLOWLOCK_CONFIRM": "x"}))
	for _, w := range []string{"bad_type_int.yaml:2: ipv6_prefix", "FLOWLOCK_CONFIRM"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error = %v\nwant it to contain %q", err, w)
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"--mode", "shadow", "-h"}} {
		_, err := Load(args, env(map[string]string{"FLOWLOCK_CONFIG": "testdata/missing.yaml"}))
		if !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Load(%q) error = %v, want flag.ErrHelp", args, err)
		}
	}
}

func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"missing via flag", []string{"--config", "testdata/missing.yaml"}, nil,
			[]string{"--config (FLOWLOCK_CONFIG):", "testdata/missing.yaml", "no such file"}},
		{"missing via env", nil, map[string]string{"FLOWLOCK_CONFIG": "testdata/missing.yaml"},
			[]string{"--config (FLOWLOCK_CONFIG):", "testdata/missing.yaml"}},
		{"directory", []string{"--config", "testdata"}, nil,
			[]string{"--config (FLOWLOCK_CONFIG):", "testdata"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.args, env(tc.env))
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Load error = %v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

func TestEmptyAndCommentOnlyFiles(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{"empty.yaml": "", "comments.yaml": "# nothing set\n", "tilde.yaml": "~\n"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load([]string{"--config", path}, nil)
		if err != nil {
			t.Errorf("Load(%s) error: %v", name, err)
			continue
		}
		want := Default()
		want.ConfigFile = path
		if d := diffConfig(c, want); d != "" {
			t.Errorf("Load(%s) is not the default:%s", name, d)
		}
	}
}

func TestAdminTokenFile(t *testing.T) {
	const fileToken = "flowlock-admin-token-0123456789" // testdata/admin_token.txt, trimmed
	t.Run("flag", func(t *testing.T) {
		c, err := Load([]string{"--admin-token-file", "testdata/admin_token.txt"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.AdminToken.Reveal(); got != fileToken {
			t.Errorf("token = %q, want %q", got, fileToken)
		}
	})
	t.Run("env", func(t *testing.T) {
		c, err := Load(nil, env(map[string]string{"FLOWLOCK_ADMIN_TOKEN_FILE": "testdata/admin_token.txt"}))
		if err != nil {
			t.Fatal(err)
		}
		if got := c.AdminToken.Reveal(); got != fileToken {
			t.Errorf("token = %q, want %q", got, fileToken)
		}
	})
	t.Run("relative to the config file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "token"), []byte("tmp-token-0123456789abcdef\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "flowlock.yaml")
		if err := os.WriteFile(cfg, []byte("admin_token_file: token\nstate_file: /var/lib/flowlock/state.json\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load([]string{"--config", cfg}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.AdminToken.Reveal(); got != "tmp-token-0123456789abcdef" {
			t.Errorf("token = %q", got)
		}
		if c.AdminTokenFile != filepath.Join(dir, "token") {
			t.Errorf("AdminTokenFile = %q, want it under %s", c.AdminTokenFile, dir)
		}
		if c.StateFile != "/var/lib/flowlock/state.json" {
			t.Errorf("absolute StateFile changed to %q", c.StateFile)
		}
	})
	t.Run("flag and env conflict", func(t *testing.T) {
		_, err := Load([]string{"--admin-token-file", "testdata/admin_token.txt"},
			env(map[string]string{"FLOWLOCK_ADMIN_TOKEN": "env-token-0123456789abcdef"}))
		if err == nil || !strings.Contains(err.Error(), "--admin-token-file (FLOWLOCK_ADMIN_TOKEN_FILE): cannot be combined with --admin-token") {
			t.Errorf("error = %v, want a conflict", err)
		}
		if err != nil && strings.Contains(err.Error(), "env-token") {
			t.Errorf("error shows the token: %v", err)
		}
	})
}

// TestSecretNeverShown puts the admin token in through every source and
// looks for it in every way a Config or an error can be printed.
func TestSecretNeverShown(t *testing.T) {
	const token = "tok-SECRET-0123456789abcdef"
	hexToken := fmt.Sprintf("%x", token)
	loaded := map[string]Config{}
	for name, load := range map[string]func() (Config, error){
		"flag": func() (Config, error) { return Load([]string{"--admin-token", token}, nil) },
		"env":  func() (Config, error) { return Load(nil, env(map[string]string{"FLOWLOCK_ADMIN_TOKEN": token})) },
	} {
		c, err := load()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.AdminToken.Reveal() != token {
			t.Fatalf("%s: token not loaded", name)
		}
		loaded[name] = c
	}
	c := loaded["flag"]

	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s", "%T"} {
		outputs = append(outputs,
			fmt.Sprintf(verb, c), fmt.Sprintf(verb, &c), fmt.Sprintf(verb, c.AdminToken),
			fmt.Sprintf(verb, []any{c}), fmt.Sprintf(verb, map[string]Config{"c": c}))
	}
	outputs = append(outputs, fmt.Sprint(c), fmt.Sprintln(c.AdminToken), c.AdminToken.String(), c.AdminToken.GoString())
	js, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	red, err := json.Marshal(c.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(js), string(red), fmt.Sprint(c.Redacted()))
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "config", c, "token", c.AdminToken)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", c, "cfg", &c)
	outputs = append(outputs, logs.String())
	var usage bytes.Buffer
	Usage(&usage)
	outputs = append(outputs, usage.String(), fmt.Sprint(Reference()))

	// Errors: another setting invalid, a short token, a token file.
	for _, args := range [][]string{
		{"--admin-token", token, "--ipv6-prefix", "0"},
		{"--admin-token", "tok-SECRET", "--config", "testdata/bad_mode.yaml"},
		{"--admin-token", token, "--admin-token-file", "testdata/admin_token.txt"},
		{"--admin-token", token + " with spaces"},
		{"--admin-token=" + token, "stray"},
	} {
		_, err := Load(args, nil)
		if err == nil {
			t.Fatalf("Load(%d args) succeeded, want an error", len(args))
		}
		outputs = append(outputs, err.Error())
	}
	_, err = Load(nil, env(map[string]string{"FLOWLOCK_ADMIN_TOKEN": "tok-SECRET", "FLOWLOCK_MODE": "x"}))
	outputs = append(outputs, err.Error())

	for i, out := range outputs {
		for _, leak := range []string{"tok-SECRET", hexToken, strings.ToUpper(hexToken), "flowlock-admin-token"} {
			if strings.Contains(out, leak) {
				t.Errorf("output %d shows the token (%q):\n%s", i, leak, out)
			}
		}
	}
	if !strings.Contains(fmt.Sprintf("%+v", c), "AdminToken:(set)") {
		t.Errorf("%%+v = %+v, want AdminToken:(set)", c)
	}
	if got := c.Redacted()["admin-token"]; got != "(set)" {
		t.Errorf("Redacted admin-token = %v, want (set)", got)
	}
	if got := Default().Redacted()["admin-token"]; got != "(unset)" {
		t.Errorf("Redacted default admin-token = %v, want (unset)", got)
	}
}

// TestReferenceMatchesFlagSet guards against drift between the flags Load
// parses, Reference (the README table), Usage and the Config struct.
func TestReferenceMatchesFlagSet(t *testing.T) {
	def := Default()
	fs := newFlagParser(&def).fs
	var flags []string
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f.Name) })
	ref := Reference()
	var names []string
	for _, r := range ref {
		names = append(names, r.Flag)
	}
	if !slices.Equal(slices.Sorted(slices.Values(names)), flags) { // VisitAll is sorted
		t.Fatalf("Reference flags %v\ndiffer from the FlagSet's %v", names, flags)
	}

	var usage bytes.Buffer
	Usage(&usage)
	seenEnv, seenYAML := map[string]bool{}, map[string]bool{}
	for _, r := range ref {
		f := fs.Lookup(r.Flag)
		if r.Env != "FLOWLOCK_"+strings.ToUpper(strings.ReplaceAll(r.Flag, "-", "_")) {
			t.Errorf("%s: Env = %q", r.Flag, r.Env)
		}
		if want := strings.ReplaceAll(r.Flag, "-", "_"); r.YAML != want && !(r.Flag == "config" && r.YAML == "") {
			t.Errorf("%s: YAML = %q, want %q", r.Flag, r.YAML, want)
		}
		if r.Default != f.DefValue {
			t.Errorf("%s: Reference default %q, FlagSet default %q", r.Flag, r.Default, f.DefValue)
		}
		if r.Help == "" || r.Help != f.Usage || strings.HasSuffix(r.Help, ".") {
			t.Errorf("%s: help %q (FlagSet %q): want one line without a final period", r.Flag, r.Help, f.Usage)
		}
		if seenEnv[r.Env] || seenYAML[r.YAML] {
			t.Errorf("%s: env or YAML name used twice", r.Flag)
		}
		seenEnv[r.Env], seenYAML[r.YAML] = true, r.YAML != ""
		for _, w := range []string{"\n  --" + r.Flag, r.Env} {
			if !strings.Contains(usage.String(), w) {
				t.Errorf("Usage lacks %q", w)
			}
		}
		if _, ok := def.Redacted()[r.Flag]; !ok {
			t.Errorf("Redacted lacks %s", r.Flag)
		}
	}
	if len(def.Redacted()) != len(ref) {
		t.Errorf("Redacted has %d keys, Reference %d", len(def.Redacted()), len(ref))
	}

	// Every Config field is bound to exactly one setting.
	bound := map[uintptr]string{}
	var c Config
	for i := range settings {
		ptr := reflect.ValueOf(settings[i].field(&c)).Pointer()
		if prev, dup := bound[ptr]; dup {
			t.Errorf("settings %s and %s share a field", prev, settings[i].name)
		}
		bound[ptr] = settings[i].name
	}
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		if v.Type().Field(i).Name == "RedisPassword" {
			continue // read from --redis-password-file, never set directly (it would show in ps)
		}
		if _, ok := bound[v.Field(i).Addr().Pointer()]; !ok {
			t.Errorf("Config.%s has no setting", v.Type().Field(i).Name)
		}
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in, want string // want "" means an error
	}{
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.1.2.3/8", "10.0.0.0/8"},
		{"192.0.2.7", "192.0.2.7/32"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"2001:db8::1/32", "2001:db8::/32"},
		{"::ffff:192.0.2.7", "192.0.2.7/32"},
		{"::ffff:198.51.100.0/120", "198.51.100.0/24"},
		{"::/0", "::/0"},
		{"0.0.0.0/0", "0.0.0.0/0"},
		{"fe80::1%eth0", ""},
		{"10.0.0.0/33", ""},
		{"10.0.0", ""},
		{"proxy.local", ""},
		{"", ""},
	}
	for _, tc := range tests {
		got, err := parsePrefix(tc.in)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("parsePrefix(%q) = %v, want an error", tc.in, got)
		case tc.want != "" && (err != nil || got.String() != tc.want):
			t.Errorf("parsePrefix(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestRedacted(t *testing.T) {
	c, err := Load([]string{"--allow", "10.0.0.0/8", "--quarantine-ttl", "90m"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	red := c.Redacted()
	if got := red["allow"]; !reflect.DeepEqual(got, []string{"10.0.0.0/8"}) {
		t.Errorf("allow = %#v", got)
	}
	if got := red["quarantine-ttl"]; got != "1h30m" {
		t.Errorf("quarantine-ttl = %#v, want \"1h30m\"", got)
	}
	js, err := json.Marshal(Default().Redacted())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(js, []byte(`"deny":[]`)) {
		t.Errorf("empty list is not [] in JSON: %s", js)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", time.Second: "1s", 5 * time.Minute: "5m", 24 * time.Hour: "24h",
		90 * time.Minute: "1h30m", 100 * time.Millisecond: "100ms", 61 * time.Second: "1m1s",
		-time.Second: "-1s", time.Hour + time.Second: "1h0m1s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(want); err != nil || back != d {
			t.Errorf("%q does not parse back to %v", want, d)
		}
	}
}

// TestRedisSettings: each --redis-* mistake is refused with a message that
// names the setting, and the password never appears in one.
func TestRedisSettings(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret-redis-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--redis-tls"}, "--redis-tls (FLOWLOCK_REDIS_TLS): has no effect without --redis-addr"},
		{[]string{"--redis-addr", "redis"}, "--redis-addr (FLOWLOCK_REDIS_ADDR): must be host:port"},
		{[]string{"--redis-addr", "a:6379,:6379"}, "--redis-addr (FLOWLOCK_REDIS_ADDR): host must not be empty"},
		{[]string{"--redis-addr", "a:0"}, "--redis-addr (FLOWLOCK_REDIS_ADDR): port must be a number 1-65535"},
		{[]string{"--redis-addr", "a:6379", "--redis-key-prefix", "x{1}"}, "--redis-key-prefix (FLOWLOCK_REDIS_KEY_PREFIX): must be at most 64 bytes without { or }"},
		{[]string{"--redis-addr", "a:6379", "--redis-ca-file", pw}, "--redis-ca-file (FLOWLOCK_REDIS_CA_FILE): needs --redis-tls"},
		{[]string{"--redis-addr", "a:6379", "--redis-password-file", empty}, "is empty"},
		{[]string{"--redis-addr", "a:6379", "--redis-password-file", pw + ".missing"}, "--redis-password-file (FLOWLOCK_REDIS_PASSWORD_FILE)"},
	} {
		_, err := Load(tc.args, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%q) = %v, want %q", tc.args, err, tc.want)
		}
	}
	c, err := Load([]string{"--redis-addr", "a:6379, b:6380", "--redis-password-file", pw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.RedisAddrs(); len(got) != 2 || got[0] != "a:6379" || got[1] != "b:6380" {
		t.Errorf("RedisAddrs = %q", got)
	}
	if c.RedisPassword.Reveal() != "s3cret-redis-pw" {
		t.Error("password not read from the file")
	}
	if out := fmt.Sprint(c.Redacted(), c); strings.Contains(out, "s3cret") {
		t.Errorf("the password shows: %s", out)
	}
}

// TestTrustedProxiesCoveringAFamily checks that ranges which add up to every
// IPv4 or every IPv6 address are refused like a /0, and that ranges which
// leave any address out are not.
func TestTrustedProxiesCoveringAFamily(t *testing.T) {
	refused := []struct{ list, want string }{
		{"0.0.0.0/1,128.0.0.0/1", "0.0.0.0/1,128.0.0.0/1 together trust every IPv4 address"},
		{"::/1,8000::/1", "::/1,8000::/1 together trust every IPv6 address"},
		{"10.0.0.0/8,0.0.0.0/2,64.0.0.0/2,128.0.0.0/2,192.0.0.0/3,224.0.0.0/4,240.0.0.0/4", "every IPv4 address"},
		{"0.0.0.0/1,128.0.0.0/2,192.0.0.0/2,2001:db8::/32", "every IPv4 address"},
		{"0.0.0.0/1,128.0.0.0/1,::/1,8000::/1", "every IPv6 address"},
	}
	for _, tc := range refused {
		_, err := Load([]string{"--trusted-proxies", tc.list}, nil)
		if err == nil {
			t.Errorf("--trusted-proxies %s: accepted, want refused", tc.list)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "--trusted-proxies") || !strings.Contains(msg, tc.want) {
			t.Errorf("--trusted-proxies %s: error %q, want it to name the flag and say %q", tc.list, msg, tc.want)
		}
	}
	_, err := Load([]string{"--trusted-proxies", "0.0.0.0/1,128.0.0.0/1,::/1,8000::/1"}, nil)
	if err == nil || !strings.Contains(err.Error(), "every IPv4 address") {
		t.Errorf("both families covered: %v, want both reported", err)
	}
	_, err = Load([]string{"--trusted-proxies", "0.0.0.0/0,10.0.0.0/8"}, nil)
	if err == nil || strings.Count(err.Error(), "every") != 1 {
		t.Errorf("a /0 beside another range: %v, want it reported once", err)
	}
	for _, list := range []string{
		"0.0.0.0/1,128.0.0.0/2,192.0.0.0/3,224.0.0.0/4,240.0.0.0/5,248.0.0.0/6,252.0.0.0/7,254.0.0.0/8,255.0.0.0/9", // 255.128.0.0/9 left out
		"0.0.0.0/1,::/1", // half of each family
		"0.0.0.0/1,128.0.0.0/2,255.255.255.255/32", // 192.0.0.0/2 but one address left out
		"::/1,8000::/2,c000::/3,e000::/4,f000::/5,f800::/6,fc00::/7,fe00::/8,ff00::/9,ff80::/10,ffc0::/11",
	} {
		if _, err := Load([]string{"--trusted-proxies", list}, nil); err != nil && strings.Contains(err.Error(), "every I") {
			t.Errorf("--trusted-proxies %s: %v, want no whole-family refusal", list, err)
		}
	}
}
