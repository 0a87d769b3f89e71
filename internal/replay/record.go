// Package replay reads access logs and runs them through Flow Lock's
// decision policy in virtual time: a backtest of what the service would
// have done to every client in the log.
//
// # Input formats
//
// [Reader] reads one record per line in one of three formats ([Format]):
//
//   - JSON Lines in the DESIGN.md §3 trace format, as written by
//     flowlock-sim trace: {"ts": ..., "ip": ..., "method": ..., "path": ...,
//     "headers": {...}, "label": ..., "scenario": ...}. ts is an RFC 3339
//     time or a number of Unix seconds (fractions allowed). The client
//     source address is ip; X-Forwarded-For and the identity header come
//     from headers (names are matched case-insensitively).
//   - Envoy's default access-log format,
//     [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%"
//     %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%
//     %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%"
//     "%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%", optionally
//     followed by %DOWNSTREAM_REMOTE_ADDRESS%; Istio's default proxy format,
//     which has the same quoted run and DOWNSTREAM_REMOTE_ADDRESS as the
//     fourth field after it, is read too. The source address is
//     DOWNSTREAM_REMOTE_ADDRESS when the line has it; otherwise the
//     rightmost X-Forwarded-For entry, which Envoy appends itself when it is
//     the edge (use_remote_address). START_TIME has millisecond resolution.
//   - nginx's predefined "combined" format, $remote_addr - $remote_user
//     [$time_local] "$request" $status $body_bytes_sent "$http_referer"
//     "$http_user_agent", optionally followed by "$http_x_forwarded_for" (as
//     in the stock "main" format). $time_local has one-second resolution,
//     which hides the rhythm Flow Lock scores: a replay of such a log
//     under-detects bots faster than about one request per second and can
//     say nothing reliable below a few seconds.
//
// [Detect] picks the format of a file from its first non-blank line.
//
// # Replay
//
// [Run] sorts the records by time (stably, so lines with equal times keep
// their order), resolves each record's identity with the service's
// [authz.ClientRules], decides it with an [authz.Policy] at the record's
// own time, sweeps idle state as the service does, and returns one
// [Result] per identity in the order identities first appear.
package replay

import (
	"fmt"
	"net/netip"
	"time"
)

// Record is one request read from an access log.
type Record struct {
	// Source names the input the record came from ("-" for stdin) and Line
	// its 1-based line number, for messages.
	Source string
	Line   int
	// TS is when the request arrived.
	TS time.Time
	// Addr is the address of the peer the proxy saw (the ip field, Envoy's
	// DOWNSTREAM_REMOTE_ADDRESS or nginx's $remote_addr); invalid when the
	// log does not say.
	Addr netip.Addr
	// XFF is the X-Forwarded-For header as the proxy passed it on, "" when
	// absent.
	XFF string
	// Method and Path are the request's; Path includes any query string.
	Method, Path string
	// Headers holds the other request headers the log recorded, with
	// lowercase names (JSON Lines only; Envoy and nginx logs give the user
	// agent as "user-agent").
	Headers map[string]string
	// Label and Scenario are the ground truth of a simulated trace
	// (flowlock-sim trace), "" otherwise.
	Label, Scenario string
}

// Header returns the value of the lowercase header name, "" if absent.
func (r *Record) Header(name string) string {
	if name == "x-forwarded-for" {
		return r.XFF
	}
	return r.Headers[name]
}

// LineError reports a line that could not be read as a record.
type LineError struct {
	Source string
	Line   int
	Err    error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("%s:%d: %v", e.Source, e.Line, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }
