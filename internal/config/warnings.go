package config

import (
	"fmt"
	"strings"
)

// Warnings returns what is legal but probably wrong in a loaded Config,
// one sentence each, for main to log at WARN at startup. args are the
// command-line flags given to Load; environ is the process environment
// as os.Environ gives it, whose FLOWLOCK_* names are checked for typos
// (Load reads only the names it knows, so a misspelled one would be
// ignored without a word, while a misspelled YAML key is an error).
// No warning includes a value of a secret.
func Warnings(c Config, args, environ []string) []string {
	var out []string
	if tokenOnCommandLine(args) {
		out = append(out, "--admin-token on the command line is visible to every user of this machine in the process list (ps, /proc); "+
			"use --admin-token-file or the environment variable FLOWLOCK_ADMIN_TOKEN instead")
	}
	out = append(out, unknownEnv(environ)...)
	for _, p := range c.TrustedProxies {
		if (p.Addr().Is4() && p.Bits() < 8) || (p.Addr().Is6() && p.Bits() < 32) {
			out = append(out, fmt.Sprintf("--trusted-proxies %s is a very wide range: every client inside it may choose its own address in X-Forwarded-For; "+
				"list only the ranges of your own proxies", p))
		}
	}
	if c.IdentityHeader != "" {
		out = append(out, fmt.Sprintf("--identity-header %s is believed as it arrives: your proxy must set it after verifying the client "+
			"(and remove it from client requests), or any client can pick its identity, rotate it to evade detection, "+
			"or send another client's value to get that client quarantined", c.IdentityHeader))
	}
	if c.Identity == IdentityFingerprint {
		out = append(out, "--identity fingerprint keys clients by TLS stack alone: everyone on one browser build is one client "+
			"(a crowd that timing never confirms, with one volume budget); use it only where clients are few and their stacks distinct, "+
			"or use --identity address+fingerprint")
	}
	out = append(out, actionWarnings(c)...)
	return out
}

// tokenOnCommandLine reports whether args set the admin token itself (not
// its file) as a flag.
func tokenOnCommandLine(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "admin-token" {
			return true
		}
	}
	return false
}

// unknownEnv returns a warning for every FLOWLOCK_* variable in environ
// that names no setting, with the closest name that does.
func unknownEnv(environ []string) []string {
	known := make([]string, 0, len(settings))
	for i := range settings {
		known = append(known, strings.ToLower(settings[i].env()))
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "FLOWLOCK_") || lookupEnv(name) != nil {
			continue
		}
		msg := fmt.Sprintf("environment variable %s is not a flowlock-authz setting and is ignored", clipName(name))
		if hint := suggestEnv(strings.ToLower(name), known); hint != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", strings.ToUpper(hint))
		}
		out = append(out, msg)
	}
	return out
}

// lookupEnv returns the setting of an environment variable name, or nil.
func lookupEnv(name string) *setting {
	for i := range settings {
		if settings[i].env() == name {
			return &settings[i]
		}
	}
	return nil
}

// clipName shortens a variable name for a log line.
func clipName(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// suggestEnv is suggest for environment variable names, which are long
// and share their FLOWLOCK_ start: it accepts a distance of up to 3 (one
// in four characters for shorter suffixes, and never less than suggest's
// 2), so that FLOWLOCK_TRUSTED_PROXY finds FLOWLOCK_TRUSTED_PROXIES.
func suggestEnv(name string, candidates []string) string {
	return suggestWithin(name, candidates, max(2, min(3, max(1, (len(name)-len("flowlock_"))/4))))
}
