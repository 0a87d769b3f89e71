package dashboard

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/flowlock/flowlock/internal/untrusted"
)

// hostGuard refuses, with 421 Misdirected Request, a request whose Host is
// neither an IP literal nor an allowed name. A DNS-rebinding page makes an
// operator's browser send requests for the attacker's name to this server;
// the browser then lets that page read the answers, and the reads need no
// token. The attacker's name is not on the list, so nothing is answered.
// Probes and scrapers (/healthz, /readyz, /metrics) are let through with
// any Host: they address the pod or container by whatever name their
// platform uses, and what they read holds no identity.
type hostGuard struct {
	any      bool            // "*": every name is allowed
	exact    map[string]bool // allowed names
	suffixes []string        // ".example.com" for "*.example.com"
}

// newHostGuard builds a guard from --http-allowed-hosts entries.
func newHostGuard(allowed []string) hostGuard {
	g := hostGuard{exact: make(map[string]bool)}
	for _, h := range allowed {
		switch {
		case h == "*":
			g.any = true
		case strings.HasPrefix(h, "*."):
			g.suffixes = append(g.suffixes, h[1:])
		default:
			g.exact[strings.ToLower(h)] = true
		}
	}
	return g
}

// allowed reports whether a Host header value may be served.
func (g hostGuard) allowed(host string) bool {
	if g.any {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	if g.exact[host] {
		return true
	}
	for _, s := range g.suffixes {
		if strings.HasSuffix(host, s) && len(host) > len(s) {
			return true
		}
	}
	return false
}

// probePaths answer any Host; see hostGuard.
var probePaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// wrap returns next behind the guard.
func (g hostGuard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !probePaths[r.URL.Path] && !g.allowed(r.Host) {
			writeError(w, http.StatusMisdirectedRequest, "host "+quoteClip(r.Host)+
				" is not served here: use an IP address or an allowed name, or add the name to --http-allowed-hosts")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// quoteClip quotes untrusted text for an error message, short.
func quoteClip(s string) string {
	return `"` + untrusted.Visible(untrusted.Clip(s, 64)) + `"`
}
