package authz

import (
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Action is how enforce mode answers a client that timing quarantined
// (--quarantine-action). The deny list and the volume limit always deny.
type Action uint8

// Actions.
const (
	// ActionDeny answers 403 with Retry-After and the JSON body.
	ActionDeny Action = iota
	// ActionHoneypot lets the request through with x-flowlock-route:
	// honeypot, so the proxy routes it to a decoy upstream instead of the
	// API: the bot is not told it was caught, and what it goes for next is
	// recorded there.
	ActionHoneypot
	// ActionTarpit denies as ActionDeny, after holding the answer for a
	// bounded time (Tarpit), which slows a bot that waits for each answer.
	ActionTarpit
)

// String returns "deny", "honeypot" or "tarpit".
func (a Action) String() string {
	switch a {
	case ActionHoneypot:
		return "honeypot"
	case ActionTarpit:
		return "tarpit"
	}
	return "deny"
}

// ParseAction reads "deny", "honeypot" or "tarpit".
func ParseAction(s string) (Action, bool) {
	for _, a := range []Action{ActionDeny, ActionHoneypot, ActionTarpit} {
		if a.String() == s {
			return a, true
		}
	}
	return ActionDeny, false
}

// The route header of a honeypot answer. Envoy routes on it after the
// Check when the ext_authz filter has clear_route_cache set (see
// deploy/envoy.yaml); forward-auth proxies route on the same header of the
// 200 answer. It is in the x-flowlock-* namespace, so a client cannot send
// it itself: Envoy's early header mutation and readInput's Strip remove it.
const (
	routeHeader   = "x-flowlock-route"
	routeHoneypot = "honeypot"
	hdrRoute      = "X-Flowlock-Route" // canonical, for forward-auth
)

var (
	routeHoneypotHeader = overwrite(routeHeader, routeHoneypot)
	routeHoneypotValues = []string{routeHoneypot} // cap 1: see riskValues

	// Honeypot answers are built once per score, like allowByScore: a
	// quarantined client's Check then costs what a calm client's does, so
	// its timing cannot tell it that it is being deceived.
	honeypotByScore [101]*checkAnswer
)

func init() {
	// Its own risk headers: riskHeaders is filled by another file's init,
	// which may run after this one.
	for s := range honeypotByScore {
		honeypotByScore[s] = newCheckAnswer(&authv3.CheckResponse{
			Status: okStatus,
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{overwrite(riskHeader, strconv.Itoa(s)), routeHoneypotHeader},
			}},
		})
	}
}

// responseFor is the answer to a decided Check: the allow answer, the
// honeypot answer (an allow that routes to the decoy), or the deny answer.
// Every answer for a request without client-sent x-flowlock-* headers is
// an immutable, shared message, so a caller may marshal it once and keep
// the bytes.
func responseFor(d Decision, strip []string) *authv3.CheckResponse {
	switch {
	case d.Allow:
		return allowResponse(d.Score, strip)
	case d.Action == ActionHoneypot:
		return honeypotResponse(d.Score, strip)
	}
	return cachedDenyResponse(d)
}

// answerFor is responseFor with the answer's wire encoding, for the lean
// path: the shared answers carry bytes made once; an answer that names
// client-sent headers (strip) is encoded now, since those names point into
// the request, which goes back to gRPC before the answer is sent. It
// reports false when the answer could not be encoded.
func answerFor(d Decision, strip []string) (*checkAnswer, bool) {
	if len(strip) == 0 {
		switch {
		case d.Allow:
			return allowByScore[min(d.Score, 100)], true
		case d.Action == ActionHoneypot:
			return honeypotByScore[min(d.Score, 100)], true
		}
	}
	if !d.Allow && d.Action != ActionHoneypot {
		return cachedDenyAnswer(d), true
	}
	a := newCheckAnswer(responseFor(d, strip))
	a.msg = nil // only the bytes: the message names the request's headers
	return a, a.wire != nil
}

// honeypotResponse lets the request through to the decoy: the allow answer
// plus x-flowlock-route: honeypot. A client-sent route header is not
// removed, since the answer overwrites it.
func honeypotResponse(score uint8, strip []string) *authv3.CheckResponse {
	score = min(score, 100)
	strip = slices.DeleteFunc(slices.Clone(strip), func(k string) bool { return strings.EqualFold(k, routeHeader) })
	if len(strip) == 0 {
		return honeypotByScore[score].msg
	}
	return &authv3.CheckResponse{
		Status: okStatus,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers:         honeypotByScore[score].msg.GetOkResponse().GetHeaders(),
			HeadersToRemove: strip,
		}},
	}
}
