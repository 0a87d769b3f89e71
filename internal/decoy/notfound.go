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

// ReadNotFound reads an answer as `curl -si URL` prints it: a status line
// (HTTP/1.1 404 Not Found, HTTP/2 404, ...), the headers, an empty line
// and the body, byte for byte. Date, Content-Length, Transfer-Encoding,
// Connection and Keep-Alive are dropped: the decoy's server sets them for
// each answer, as the API's does.
func ReadNotFound(from io.Reader) (*NotFound, error) {
	b, err := io.ReadAll(io.LimitReader(from, MaxNotFoundFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxNotFoundFile {
		return nil, fmt.Errorf("larger than %d bytes", MaxNotFoundFile)
	}
	status, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return nil, errors.New("no header section: want the status line, headers, an empty line and the body, as curl -si prints them")
	}
	code, err := statusCode(strings.TrimRight(string(status), "\r"))
	if err != nil {
		return nil, err
	}
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(rest)))
	mime, err := r.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("headers: %w (want an empty line before the body)", err)
	}
	h := http.Header(mime)
	for _, k := range perAnswerHeaders {
		h.Del(k)
	}
	// The body is what follows the first empty line, exactly.
	i := bytes.Index(rest, []byte("\r\n\r\n"))
	j := bytes.Index(rest, []byte("\n\n"))
	var body []byte
	switch {
	case bytes.HasPrefix(rest, []byte("\r\n")):
		body = rest[2:]
	case bytes.HasPrefix(rest, []byte("\n")):
		body = rest[1:]
	case i >= 0 && (j < 0 || i < j):
		body = rest[i+4:]
	case j >= 0:
		body = rest[j+2:]
	}
	return &NotFound{Status: code, Header: h, Body: string(body)}, nil
}

// statusCode reads the status line "HTTP/<version> <code> [reason]".
func statusCode(line string) (int, error) {
	proto, rest, _ := strings.Cut(line, " ")
	if !strings.HasPrefix(proto, "HTTP/") {
		return 0, fmt.Errorf("first line %q: want a status line such as HTTP/1.1 404 Not Found", clipForError(line))
	}
	s, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
	code, err := strconv.Atoi(s)
	if err != nil || code < 200 || code > 599 {
		return 0, fmt.Errorf("status line %q: want a status 200-599", clipForError(line))
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
