package dashboard

import "net/http"

// addRoutes lists every route the dashboard serves. GET routes answer HEAD
// too; a known path with another method gets 405 with an Allow header.
func (s *server) addRoutes(mux *http.ServeMux) {
	// Pages and probes.
	mux.HandleFunc("GET /{$}", s.handlePage)
	mux.HandleFunc("GET /status", s.handlePage)
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	if s.metrics != nil {
		mux.Handle("GET /metrics", s.metrics)
	}

	// Read-only API.
	mux.HandleFunc("GET /api/v1/identities", s.handleIdentities)
	mux.HandleFunc("GET /api/v1/quarantine", s.handleQuarantine)
	mux.HandleFunc("GET /api/v1/config", s.handleConfig)

	// Admin API: bearer token required.
	mux.Handle("POST /api/v1/quarantine", s.admin(s.handleBan))
	// {identity} is one path segment, URL-decoded: write the slash of an
	// IPv6 prefix as %2F (2001:db8::%2F64), or give any address in the
	// prefix, which IPv6Prefix groups the same way.
	mux.Handle("DELETE /api/v1/quarantine/{identity}", s.admin(s.handleRelease))
}

// contentSecurityPolicy allows the page's own resources only: no inline
// script or style, no framing, no foreign form targets.
const contentSecurityPolicy = "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

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
