package authz

import (
	"log/slog"
	"net/http"
)

// ForwardAuthOptions configure the HTTP forward-auth handler.
type ForwardAuthOptions struct {
	Policy   *Policy
	Rules    ClientRules
	Recorder Recorder
	Logger   *slog.Logger
}

// NewForwardAuth returns the HTTP forward-auth handler. PLACEHOLDER until
// issue 5 lands: it allows everything.
func NewForwardAuth(o ForwardAuthOptions) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
}
