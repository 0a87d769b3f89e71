package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

const errAdminDisabled = "admin API disabled: start flowlock-authz with --admin-token or --admin-token-file"

// admin guards a mutating handler: 403 when no admin token is configured,
// 401 with a WWW-Authenticate challenge when the request lacks the token.
func (s *server) admin(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.adminOn {
			writeError(w, http.StatusForbidden, errAdminDisabled)
			return
		}
		if !s.authorized(r) {
			s.log.WarnContext(r.Context(), "admin request rejected: missing or invalid token",
				"route", r.Pattern, "remote_addr", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="flowlock"`)
			writeError(w, http.StatusUnauthorized, "missing or invalid admin token")
			return
		}
		h(w, r)
	})
}

// authorized reports whether r carries "Authorization: Bearer <admin token>".
//
// The comparison takes the same time however much of the token is right:
// both sides are hashed to a fixed length first (subtle.ConstantTimeCompare
// returns early when lengths differ) and then compared in constant time.
// TestTokenComparedInConstantTime keeps it that way.
func (s *server) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimLeft(token, " ")))
	return subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1
}
