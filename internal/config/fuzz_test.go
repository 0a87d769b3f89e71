package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzLoad feeds Load command-line arguments (a string split on spaces)
// and an environment ("NAME=value" lines). Load must never panic; a
// successful Config must be valid, print without its token, and load again
// from its own settings written as flags.
func FuzzLoad(f *testing.F) {
	for _, seed := range [][2]string{
		{"", ""},
		{"--mode shadow --demo", ""},
		{"--allow 10.0.0.0/8,::ffff:192.0.2.1 --allow=2001:db8::/32 --deny 198.51.100.7", "FLOWLOCK_ALLOW=203.0.113.0/24"},
		{"--ipv6-prefix=200 --confirm 0", "FLOWLOCK_LOG_LEVEL=trace"},
		{"--quarantine-ttl 1h --quarantine-max-ttl 30m", ""},
		{"--admin-token 0123456789abcdef0123 --identity-header x-api-key", ""},
		{"--volume-rate 2.5 --volume-burst 20 --grpc-addr 127.0.0.1:0", "FLOWLOCK_HTTP_ADDR=[::1]:0"},
		{"-h", ""},
		{"--demo false", ""},
		{"--exclude-path /healthz --exclude-path=/poll,/events", "FLOWLOCK_EXCLUDE_PATH=/x"},
		{"-- stray", "FLOWLOCK_IPV6_PREFIX=abc\nFLOWLOCK_CLOCK_SKEW=5"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, argText, envText string) {
		var args []string
		if argText != "" {
			args = strings.Split(argText, " ")
		}
		// Files are left out: a fuzzed path could name a device or a FIFO.
		for _, a := range args {
			if strings.Contains(a, "config") || strings.Contains(a, "token-file") {
				t.Skip("reads files")
			}
		}
		vars := map[string]string{}
		for line := range strings.SplitSeq(envText, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok && k != "FLOWLOCK_CONFIG" && k != "FLOWLOCK_ADMIN_TOKEN_FILE" {
				vars[k] = v
			}
		}

		c, err := Load(args, env(vars))
		if err != nil {
			if err.Error() == "" && !errors.Is(err, flag.ErrHelp) {
				t.Fatalf("Load(%q) returned an empty error", args)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load(%q) returned a config that fails Validate: %v", args, err)
		}
		if n := len(c.Redacted()); n != len(settings) {
			t.Fatalf("Redacted has %d keys, want %d", n, len(settings))
		}

		// The token changes nothing in the printed Config but (set).
		noToken := c
		noToken.AdminToken = Secret{}
		for _, verb := range []string{"%v", "%+v", "%#v"} {
			got := strings.ReplaceAll(fmt.Sprintf(verb, c), "(set)", "(unset)")
			if want := fmt.Sprintf(verb, noToken); got != want {
				t.Fatalf("%s of Config depends on the token beyond (set):\n%s\n%s", verb, got, want)
			}
		}

		// The effective settings, written as flags, give the same Config.
		again, err := Load(asFlags(c), nil)
		if err != nil {
			t.Fatalf("reloading %q: %v", asFlags(c), err)
		}
		if d := diffConfig(again, c); d != "" {
			t.Fatalf("reloading %q differs:%s", asFlags(c), d)
		}
	})
}

// asFlags writes every setting of c as a --name=value flag. ConfigFile and
// AdminTokenFile are left out: the file has been read already.
func asFlags(c Config) []string {
	var args []string
	for i := range settings {
		s := &settings[i]
		v := s.format(&c)
		switch s.name {
		case "config", "admin-token-file":
			continue
		case "admin-token":
			v = c.AdminToken.Reveal()
		}
		args = append(args, "--"+s.name+"="+v)
	}
	return args
}

// FuzzApplyYAML feeds the file decoder arbitrary bytes. It must never
// panic, and every error must name the file.
func FuzzApplyYAML(f *testing.F) {
	paths, _ := filepath.Glob("testdata/*.yaml")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &x [1, 2]\nallow: *x\n"))
	f.Add([]byte("<<: {mode: shadow}\n"))
	f.Add([]byte("? [a]\n: b\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		err := applyYAML(&c, "fuzz.yaml", data)
		if err != nil && !strings.HasPrefix(err.Error(), "fuzz.yaml") {
			t.Fatalf("error does not name the file: %v", err)
		}
		if err == nil {
			// Whatever was set must survive a trip through the flags.
			c.AdminTokenFile = ""
			var again Config
			p := newFlagParser(&again)
			if err := p.parse(asFlags(c)); err != nil {
				t.Fatalf("flags of a decoded file do not parse: %v", err)
			}
			if !reflect.DeepEqual(again, c) {
				t.Fatalf("flags of a decoded file differ:%s", diffConfig(again, c))
			}
		}
	})
}
