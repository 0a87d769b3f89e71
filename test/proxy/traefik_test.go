package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// Traefik's dynamic configuration, as far as deploy/traefik/dynamic.yml
// uses it: field names as in Traefik's docs (v2.4+ and v3) for the file
// provider. Decoding is strict, so a misspelt or misplaced key fails here
// instead of being ignored by Traefik with a log line.
type traefikDynamic struct {
	HTTP *struct {
		Routers     map[string]traefikRouter     `yaml:"routers"`
		Middlewares map[string]traefikMiddleware `yaml:"middlewares"`
		Services    map[string]traefikService    `yaml:"services"`
	} `yaml:"http"`
}

type traefikRouter struct {
	EntryPoints []string `yaml:"entryPoints"`
	Rule        string   `yaml:"rule"`
	RuleSyntax  string   `yaml:"ruleSyntax"`
	Priority    int      `yaml:"priority"`
	Middlewares []string `yaml:"middlewares"`
	Service     string   `yaml:"service"`
}

// traefikMiddleware holds exactly one kind of middleware.
type traefikMiddleware struct {
	ForwardAuth *traefikForwardAuth `yaml:"forwardAuth"`
	Headers     *traefikHeaders     `yaml:"headers"`
}

type traefikForwardAuth struct {
	Address                  string   `yaml:"address"`
	TrustForwardHeader       bool     `yaml:"trustForwardHeader"`
	AuthResponseHeaders      []string `yaml:"authResponseHeaders"`
	AuthResponseHeadersRegex string   `yaml:"authResponseHeadersRegex"`
	AuthRequestHeaders       []string `yaml:"authRequestHeaders"`
	AddAuthCookiesToResponse []string `yaml:"addAuthCookiesToResponse"`
	PreserveLocationHeader   bool     `yaml:"preserveLocationHeader"`
	PreserveRequestMethod    bool     `yaml:"preserveRequestMethod"`
}

type traefikHeaders struct {
	CustomRequestHeaders  map[string]string `yaml:"customRequestHeaders"`
	CustomResponseHeaders map[string]string `yaml:"customResponseHeaders"`
}

type traefikService struct {
	LoadBalancer *struct {
		Servers []struct {
			URL string `yaml:"url"`
		} `yaml:"servers"`
		PassHostHeader *bool `yaml:"passHostHeader"`
	} `yaml:"loadBalancer"`
}

// traefikRule is a Traefik rule built from matchers such as
// PathPrefix(`/`) or Host(`api`), joined with && or ||.
var traefikRule = regexp.MustCompile("^!?[A-Z][A-Za-z]*\\(`[^`]*`(, *`[^`]*`)*\\)( *(&&|\\|\\|) *!?[A-Z][A-Za-z]*\\(`[^`]*`(, *`[^`]*`)*\\))*$")

// checkTraefik loads a dynamic configuration the way Traefik's file
// provider would and checks what Traefik checks when it builds routers
// (references resolve, one kind per middleware, valid URLs and regexes),
// plus what Flow Lock needs from ForwardAuth.
func checkTraefik(data []byte) error {
	var cfg traefikDynamic
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	if cfg.HTTP == nil || len(cfg.HTTP.Routers) == 0 {
		return errors.New("no http routers")
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	for name, m := range cfg.HTTP.Middlewares {
		if n := btoi(m.ForwardAuth != nil) + btoi(m.Headers != nil); n != 1 {
			fail("middleware %s: %d kinds, want exactly one", name, n)
		}
		if fa := m.ForwardAuth; fa != nil {
			checkForwardAuth(name, fa, fail)
		}
	}
	for name, s := range cfg.HTTP.Services {
		if s.LoadBalancer == nil || len(s.LoadBalancer.Servers) == 0 {
			fail("service %s: no loadBalancer servers", name)
			continue
		}
		for _, srv := range s.LoadBalancer.Servers {
			if u, err := url.Parse(srv.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				fail("service %s: server url %q is not an http(s) URL", name, srv.URL)
			}
		}
	}
	checked := false
	for name, r := range cfg.HTTP.Routers {
		if len(r.EntryPoints) == 0 {
			fail("router %s: no entryPoints", name)
		}
		if !traefikRule.MatchString(r.Rule) {
			fail("router %s: rule %q is not matcher(`value`) syntax", name, r.Rule)
		}
		if _, ok := cfg.HTTP.Services[r.Service]; !ok {
			fail("router %s: service %q is not defined", name, r.Service)
		}
		strip, auth := -1, -1
		for i, mw := range r.Middlewares {
			m, ok := cfg.HTTP.Middlewares[mw]
			if !ok {
				fail("router %s: middleware %q is not defined", name, mw)
				continue
			}
			if m.ForwardAuth != nil && auth < 0 {
				auth = i
			}
			if v, ok := m.Headers.customResponse()["X-Flowlock-Deny-Body"]; ok && v == "" && strip < 0 {
				strip = i
			}
		}
		if auth >= 0 {
			checked = true
			// Middlewares run in order; a response header is removed only
			// by a middleware outside (before) the one that writes it.
			if strip < 0 || strip > auth {
				fail("router %s: no headers middleware before forwardAuth removes X-Flowlock-Deny-Body from denials", name)
			}
		}
	}
	if !checked {
		fail("no router uses a forwardAuth middleware")
	}
	return errors.Join(errs...)
}

func (h *traefikHeaders) customResponse() map[string]string {
	if h == nil {
		return nil
	}
	return h.CustomResponseHeaders
}

// checkForwardAuth checks a ForwardAuth middleware against Flow Lock's
// forward-auth protocol.
func checkForwardAuth(name string, fa *traefikForwardAuth, fail func(string, ...any)) {
	u, err := url.Parse(fa.Address)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fail("middleware %s: address %q is not an http(s) URL", name, fa.Address)
	} else if u.Path != "/check" && !strings.HasPrefix(u.Path, "/check/") {
		fail("middleware %s: address path %q is not Flow Lock's /check", name, u.Path)
	}
	if !slices.ContainsFunc(fa.AuthResponseHeaders, func(h string) bool { return http.CanonicalHeaderKey(h) == "X-Flowlock-Risk" }) {
		fail("middleware %s: authResponseHeaders lacks X-Flowlock-Risk", name)
	}
	re, err := regexp.Compile(fa.AuthResponseHeadersRegex)
	switch {
	case fa.AuthResponseHeadersRegex == "":
		fail("middleware %s: no authResponseHeadersRegex to strip the client's X-Flowlock-* headers", name)
	case err != nil:
		fail("middleware %s: authResponseHeadersRegex: %v", name, err)
	default:
		// Traefik matches canonical header names.
		for h, want := range map[string]bool{"X-Flowlock-Risk": true, "X-Flowlock-Admin": true, "X-Forwarded-For": false, "Authorization": false} {
			if re.MatchString(h) != want {
				fail("middleware %s: authResponseHeadersRegex %q matches %s: %v, want %v", name, fa.AuthResponseHeadersRegex, h, !want, want)
			}
		}
	}
	// Without a list, Traefik copies every request header: a client's
	// X-Original-URI or X-Real-IP would then reach Flow Lock.
	if len(fa.AuthRequestHeaders) == 0 {
		fail("middleware %s: no authRequestHeaders: every client header would reach Flow Lock", name)
	}
	for _, h := range fa.AuthRequestHeaders {
		switch http.CanonicalHeaderKey(h) {
		case "X-Original-Uri", "X-Original-Method", "X-Real-Ip", "X-Forwarded-For", "X-Forwarded-Uri", "X-Forwarded-Method":
			fail("middleware %s: authRequestHeaders passes the client's %s to Flow Lock", name, h)
		}
	}
	if fa.TrustForwardHeader {
		fail("middleware %s: trustForwardHeader lets clients choose X-Forwarded-* for Flow Lock", name)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestTraefikDynamicConfig checks deploy/traefik/dynamic.yml (Traefik is
// not packaged for Debian, so it does not run here), and that the check
// catches the mistakes it is for, on broken copies.
func TestTraefikDynamicConfig(t *testing.T) {
	data, err := os.ReadFile(deployFile("traefik/dynamic.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := checkTraefik(data); err != nil {
		t.Fatalf("deploy/traefik/dynamic.yml:\n%v", err)
	}

	broken := []struct {
		name, old, new, want string
	}{
		{"misspelt field", "        trustForwardHeader: false", "        trustForwardHeaders: false", "field trustForwardHeaders not found"},
		{"missing middleware", "middlewares: [flowlock-clean, flowlock]", "middlewares: [flowlock-clean, flowlock-typo]", `middleware "flowlock-typo" is not defined`},
		{"missing service", "      service: api", "      service: sample", `service "sample" is not defined`},
		{"not the check path", "address: http://127.0.0.1:9192/check", "address: http://127.0.0.1:9192/auth", "not Flow Lock's /check"},
		{"no risk header", "          - X-Flowlock-Risk", "          - X-Flowlock-Score", "lacks X-Flowlock-Risk"},
		{"bad regex", "authResponseHeadersRegex: ^X-Flowlock-", "authResponseHeadersRegex: ^X-Flowlock-(", "authResponseHeadersRegex: error parsing regexp"},
		{"client path passed", "          - User-Agent", "          - X-Original-URI", "passes the client's X-Original-URI"},
		{"trusting clients", "trustForwardHeader: false", "trustForwardHeader: true", "trustForwardHeader lets clients"},
		{"clean after auth", "middlewares: [flowlock-clean, flowlock]", "middlewares: [flowlock, flowlock-clean]", "removes X-Flowlock-Deny-Body"},
		{"bad rule", "rule: PathPrefix(`/`)", "rule: PathPrefix(/)", "is not matcher"},
		{"two kinds", "    flowlock-clean:\n      headers:", "    flowlock-clean:\n      forwardAuth:\n        address: http://127.0.0.1:9192/check\n      headers:", "2 kinds"},
	}
	for _, tc := range broken {
		t.Run(tc.name, func(t *testing.T) {
			if n := strings.Count(string(data), tc.old); n != 1 {
				t.Fatalf("dynamic.yml has %q %d times, want once", tc.old, n)
			}
			err := checkTraefik([]byte(strings.Replace(string(data), tc.old, tc.new, 1)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("broken copy: err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
