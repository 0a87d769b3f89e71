package dashboard

import (
	"net/http"
	"strings"
)

// addRoutes lists every route the dashboard serves. GET routes answer HEAD
// too; a known path with another method gets 405 with an Allow header.
func (s *server) addRoutes(mux *http.ServeMux) {
	// Pages and probes.
	mux.HandleFunc("GET /{$}", s.handlePage)
	mux.HandleFunc("GET /status", s.handlePage)
	mux.Handle("GET /assets/", assetHandler())
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics)
	}

	// Read-only API.
	mux.HandleFunc("GET /api/v1/identities", s.handleIdentities)
	mux.HandleFunc("GET /api/v1/identities/{identity}", s.handleExplain)
	mux.HandleFunc("GET /api/v1/quarantine", s.handleQuarantine)
	mux.HandleFunc("GET /api/v1/config", s.handleConfig)
	mux.HandleFunc("GET /api/v1/fingerprints", s.handleFingerprints)
	mux.HandleFunc("GET /api/v1/fleets", s.handleFleets)
	mux.HandleFunc("GET /api/v1/stream", s.handleStream)
	mux.HandleFunc("GET /api/v1/honeypot", s.handleHoneypot)

	// Admin API: bearer token required.
	mux.Handle("POST /api/v1/quarantine", s.admin(s.handleBan))
	// {identity} is one path segment, URL-decoded: write the slash of an
	// IPv6 prefix as %2F (2001:db8::%2F64), or give any address in the
	// prefix, which IPv6Prefix groups the same way.
	mux.Handle("DELETE /api/v1/quarantine/{identity}", s.admin(s.handleRelease))
	mux.Handle("POST /api/v1/quarantine/{identity}/extend", s.admin(s.handleExtend))
	mux.Handle("POST /api/v1/auth", s.admin(s.handleAuth))
	if s.calibration != nil {
		mux.Handle("GET /api/v1/calibration", s.admin(func(w http.ResponseWriter, _ *http.Request) {
			s.writeJSON(w, s.calibration())
		}))
	}
}

// contentSecurityPolicy allows the page's own scripts, styles, images and
// stream only: no inline script or style attribute, no eval, no plugins, no
// framing, no foreign form targets. Trusted Types with no policy make the
// browser refuse every HTML sink (innerHTML and the like) outright, so a
// value from the wire can only ever become text.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// securityHeaders sets the headers every response carries. The CSP matters
// for HTML but costs nothing elsewhere, so even the mux's 404 and 405 pages
// get it. Nothing here is cacheable: every answer reflects live state.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// apiErrorsAsJSON answers a request under /api/ that matches no route the
// way the API answers every other error: JSON {"error": ...}, with the
// status the mux would give (404, or 405 with its Allow header), so that a
// client of the API never has to parse text. Everything else is the mux's.
func apiErrorsAsJSON(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/api/") {
			mux.ServeHTTP(w, r)
			return
		}
		h, pattern := mux.Handler(r)
		if pattern == "" {
			var c statusCapture
			h.ServeHTTP(&c, r)
			switch c.code {
			case http.StatusNotFound:
				writeError(w, http.StatusNotFound, "no such API endpoint")
				return
			case http.StatusMethodNotAllowed:
				allow := c.header.Get("Allow")
				w.Header().Set("Allow", allow)
				writeError(w, http.StatusMethodNotAllowed, "method not allowed here; allowed: "+allow)
				return
			}
		}
		mux.ServeHTTP(w, r) // sets the path values a matched route reads
	})
}

// statusCapture is a ResponseWriter that keeps the status and headers and
// drops the body, to learn what the mux would answer.
type statusCapture struct {
	header http.Header
	code   int
}

func (c *statusCapture) Header() http.Header {
	if c.header == nil {
		c.header = http.Header{}
	}
	return c.header
}

func (c *statusCapture) Write(b []byte) (int, error) {
	if c.code == 0 {
		c.code = http.StatusOK
	}
	return len(b), nil
}

func (c *statusCapture) WriteHeader(code int) {
	if c.code == 0 {
		c.code = code
	}
}
