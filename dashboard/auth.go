package dashboard

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
	"sync"
	"time"
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
			s.badToken()
			if n, ok := s.badLog.allow(s.now()); ok {
				s.log.WarnContext(r.Context(), "admin request rejected: missing or invalid token",
					"route", r.Pattern, "remote_addr", r.RemoteAddr, "rejected", n)
			}
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

// badTokenLogEvery is the least time between two WARN lines about rejected
// admin tokens. A token guesser sends thousands of requests; the log must
// say that it happens, with a count, not repeat it thousands of times.
const badTokenLogEvery = time.Minute

// logThrottle lets one log line through per badTokenLogEvery and counts
// the ones it holds back. It is safe for concurrent use.
type logThrottle struct {
	mu         sync.Mutex // guards the following fields
	last       time.Time  // time of the last line let through; zero before the first
	suppressed uint64     // lines held back since then
}

// allow reports whether a line may be written at now and, if so, how many
// rejections it stands for: itself and those held back since the last
// line.
func (l *logThrottle) allow(now time.Time) (uint64, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.suppressed++
	if d := now.Sub(l.last); !l.last.IsZero() && d >= 0 && d < badTokenLogEvery {
		return 0, false
	}
	n := l.suppressed
	l.last, l.suppressed = now, 0
	return n, true
}
