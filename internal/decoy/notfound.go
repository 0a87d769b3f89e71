package decoy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"

	"github.com/flowlock/flowlock/internal/untrusted"
)

// MaxNotFoundFile bounds the answer ReadNotFound reads.
const MaxNotFoundFile = 64 << 10

// NotFound is what the real API answers for a path it does not serve, so
// that the decoy answers the same outside the API's routes. The body may
// hold {method} and {path}, replaced by the request's method and path
// JSON-escaped (as Go's encoding/json writes a string, without its
// quotes), for an API that names them in its answer.
type NotFound struct {
	Status int
	Header http.Header
	Body   string
	// Dropped names the captured headers ReadNotFound left out because
	// the API (or a proxy in front of it) sets them afresh for each
	// answer (see perRequestHeader), for the caller to warn about: the
	// decoy sends none of them.
	Dropped []string
}

// DefaultNotFound is the answer when the operator gives none: a JSON API's
// plain 404, with the headers the bait's own answers carry.
func DefaultNotFound() *NotFound {
	return &NotFound{
		Status: http.StatusNotFound,
		Header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"no-store"}},
		Body:   `{"error":"not found"}` + "\n",
	}
}

// Headers of a captured answer that the server sets itself, per answer.
var perAnswerHeaders = []string{"Date", "Content-Length", "Transfer-Encoding", "Connection", "Keep-Alive"}

// Headers of a captured answer whose value is made afresh for each
// answer, by the API or a proxy or CDN in front of it. Replayed, every
// bot would get the same "fresh" value (and the operator's own cookie),
// which tells the decoy by two requests. By name, canonical:
var perRequestNames = map[string]bool{
	"Set-Cookie": true, "Set-Cookie2": true, "Etag": true, "Age": true,
	"Baggage": true, "Cf-Ray": true, "X-Amz-Cf-Id": true, "X-Amz-Id-2": true,
	"X-Timer": true, "X-Azure-Ref": true, "X-Vercel-Id": true, "Server-Timing": true,
	"X-Runtime": true, "Request-Id": true,
}

// and by a word in the lowercase name (x-request-id, x-amzn-trace-id,
// traceparent, x-correlation-id, x-envoy-upstream-service-time, ...).
var perRequestWords = []string{"request-id", "requestid", "trace", "correlation", "span-id", "response-time", "service-time"}

// perRequestHeader reports whether a captured header is made afresh for
// each answer. Expires and Last-Modified are when they hold a date (it
// moves with the answer's Date); "Expires: 0" is the same every time.
func perRequestHeader(name string, values []string) bool {
	if perRequestNames[name] {
		return true
	}
	if name == "Expires" || name == "Last-Modified" {
		for _, v := range values {
			if _, err := http.ParseTime(v); err == nil {
				return true
			}
		}
		return false
	}
	lower := strings.ToLower(name)
	for _, w := range perRequestWords {
		if strings.Contains(lower, w) {
			return true
		}
	}
	return false
}

// ReadNotFound reads an answer as `curl -si URL` prints it: a status line
// (HTTP/1.1 404 Not Found, HTTP/2 404, ...), the headers, an empty line
// and the body, byte for byte. When curl printed more than one answer (a
// proxy's "HTTP/1.1 200 Connection established", a "100 Continue", a
// redirect followed with -L), the last is the API's and is the one read.
// Date, Content-Length, Transfer-Encoding, Connection and Keep-Alive are
// dropped: the decoy's server sets them for each answer, as the API's
// does. Headers made afresh for each answer (Set-Cookie, request and
// trace ids, ETag, Age, dated Expires and Last-Modified, ...) are dropped
// too and named in Dropped.
func ReadNotFound(from io.Reader) (*NotFound, error) {
	b, err := io.ReadAll(io.LimitReader(from, MaxNotFoundFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxNotFoundFile {
		return nil, fmt.Errorf("larger than %d bytes", MaxNotFoundFile)
	}
	for {
		code, h, body, err := readAnswer(b)
		if err != nil {
			return nil, err
		}
		if next, _, _ := bytes.Cut(body, []byte("\n")); bytes.HasPrefix(next, []byte("HTTP/")) {
			// Another answer follows: this one was the proxy's, an
			// interim one, or a redirect. Each turn takes at least one
			// line off b.
			b = body
			continue
		}
		if code < 200 {
			return nil, fmt.Errorf("status %d is an interim answer and no answer follows: want a status 200-599", code)
		}
		nf := &NotFound{Status: code, Header: h, Body: string(body)}
		for _, k := range perAnswerHeaders {
			h.Del(k)
		}
		for k, v := range h {
			if perRequestHeader(k, v) {
				nf.Dropped = append(nf.Dropped, k)
				delete(h, k)
			}
		}
		slices.Sort(nf.Dropped)
		return nf, nil
	}
}

// readAnswer reads one answer of a capture: its status, its headers, and
// all that follows the empty line that ends them.
func readAnswer(b []byte) (int, http.Header, []byte, error) {
	status, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return 0, nil, nil, errors.New("no header section: want the status line, headers, an empty line and the body, as curl -si prints them")
	}
	code, err := statusCode(strings.TrimRight(string(status), "\r"))
	if err != nil {
		return 0, nil, nil, err
	}
	src := bytes.NewReader(rest)
	br := bufio.NewReader(src)
	mime, err := textproto.NewReader(br).ReadMIMEHeader()
	if err != nil {
		return 0, nil, nil, fmt.Errorf("headers: %w (want an empty line before the body)", err)
	}
	// The body is what follows the line that ended the headers, whatever
	// each line ended with (an editor may have added \r to one line only):
	// what neither textproto nor its buffer has taken yet.
	read := len(rest) - src.Len() - br.Buffered()
	return code, http.Header(mime), rest[read:], nil
}

// statusCode reads the status line "HTTP/<version> <code> [reason]".
func statusCode(line string) (int, error) {
	proto, rest, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(proto, "HTTP/") {
		return 0, fmt.Errorf("first line %q: want a status line such as HTTP/1.1 404 Not Found", untrusted.Clip(line, errorQuote))
	}
	s, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	code, err := strconv.Atoi(s)
	if err != nil || code < 100 || code > 599 || code == http.StatusSwitchingProtocols {
		return 0, fmt.Errorf("status line %q: want a status 200-599", untrusted.Clip(line, errorQuote))
	}
	return code, nil
}

// write answers r with n.
func (n *NotFound) write(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k, v := range n.Header {
		h[k] = slices.Clone(v) // n is shared by every request: the server must not write into it
	}
	body := n.Body
	if strings.Contains(body, "{") {
		body = strings.NewReplacer("{method}", jsonString(r.Method), "{path}", jsonString(r.URL.Path)).Replace(body)
	}
	w.WriteHeader(n.Status)
	_, _ = w.Write([]byte(body)) // the client may have gone; nothing to do about it
}

// jsonString is s as encoding/json writes it in a document, without the
// quotes: the same escapes (HTML-safe, invalid UTF-8 as U+FFFD) as the API
// that names it, if that is a Go API.
func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil || len(b) < 2 { // a string always encodes
		return ""
	}
	return string(b[1 : len(b)-1])
}
