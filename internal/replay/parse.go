package replay

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/flowlock/flowlock/internal/authz"
	"github.com/flowlock/flowlock/internal/untrusted"
)

// Format is an access-log format.
type Format uint8

// The formats Reader reads.
const (
	// Auto detects the format from the first non-blank line.
	Auto Format = iota
	// JSONL is the DESIGN.md §3 trace format, one JSON object per line.
	JSONL
	// Envoy is Envoy's default access-log format (and Istio's).
	Envoy
	// Nginx is nginx's "combined" format.
	Nginx
)

var formatNames = [...]string{Auto: "auto", JSONL: "jsonl", Envoy: "envoy", Nginx: "nginx"}

// String returns the format's flag value: auto, jsonl, envoy or nginx.
func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// ParseFormat reads a format name as String writes it.
func ParseFormat(s string) (Format, bool) {
	for f, name := range formatNames {
		if name == s {
			return Format(f), true
		}
	}
	return Auto, false
}

// Resolution reports the timestamp resolution of the format: 1 s for
// nginx, 1 ms for Envoy, 0 (as given) for JSON Lines.
func (f Format) Resolution() time.Duration {
	switch f {
	case Nginx:
		return time.Second
	case Envoy:
		return time.Millisecond
	}
	return 0
}

// MaxLineLen is the longest line Reader accepts; longer lines are reported
// and skipped.
const MaxLineLen = 1 << 20

// errUnknownFormat is returned by Detect for a line in none of the formats.
var errUnknownFormat = errors.New("not JSON Lines, an Envoy access log or an nginx combined log")

// Detect returns the format of a log whose first non-blank line is line.
func Detect(line string) (Format, error) {
	line = strings.TrimSpace(line)
	switch {
	case strings.HasPrefix(line, "{"):
		return JSONL, nil
	case strings.HasPrefix(line, "["):
		return Envoy, nil
	}
	first, _, _ := strings.Cut(line, " ")
	if _, ok := parseAddr(first); ok {
		return Nginx, nil
	}
	return Auto, errUnknownFormat
}

// Reader reads records from one access log. It is not safe for concurrent
// use.
type Reader struct {
	br     *bufio.Reader
	source string
	format Format
	line   int
	err    error // sticky read error
}

// NewReader returns a reader of the log r in format f (Auto detects it
// from the first non-blank line). source names the log in messages.
func NewReader(r io.Reader, source string, f Format) *Reader {
	return &Reader{br: bufio.NewReaderSize(r, 64<<10), source: source, format: f}
}

// Format returns the log's format: the one given to NewReader, or the one
// detected once a line has been read.
func (r *Reader) Format() Format { return r.format }

// Next returns the next record. Blank lines and lines starting with "#"
// are skipped. A line that cannot be read as a record gives a *LineError;
// the next call goes on with the following line. At the end of the input
// Next returns io.EOF; a read error is returned as is, and again on every
// later call.
func (r *Reader) Next() (Record, error) {
	for {
		if r.err != nil {
			return Record{}, r.err
		}
		line, tooLong, err := r.readLine()
		if err != nil {
			r.err = err
			if !errors.Is(err, io.EOF) || line == nil {
				return Record{}, err
			}
		}
		r.line++
		if tooLong {
			return Record{}, r.lineError(fmt.Errorf("line longer than %d bytes", MaxLineLen))
		}
		text := strings.TrimSpace(string(line))
		if text == "" || text[0] == '#' {
			continue
		}
		if r.format == Auto {
			f, err := Detect(text)
			if err != nil {
				return Record{}, r.lineError(err)
			}
			r.format = f
		}
		rec, err := parseLine(r.format, text)
		if err != nil {
			return Record{}, r.lineError(err)
		}
		rec.Source, rec.Line = r.source, r.line
		return rec, nil
	}
}

func (r *Reader) lineError(err error) error {
	return &LineError{Source: r.source, Line: r.line, Err: err}
}

// readLine reads one line without its line ending. A line longer than
// MaxLineLen is consumed and reported with tooLong. At the end of the input
// it returns the last, unterminated line (if any) with io.EOF.
func (r *Reader) readLine() (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := r.br.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxLineLen+2 {
			tooLong = true
		} else {
			buf = append(buf, chunk...)
		}
		switch {
		case err == nil:
			return bytes.TrimRight(buf, "\r\n"), tooLong, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF):
			if len(buf) == 0 && !tooLong {
				return nil, false, io.EOF
			}
			return bytes.TrimRight(buf, "\r\n"), tooLong, io.EOF
		default:
			return nil, false, err
		}
	}
}

// parseLine reads one non-blank line in format f.
func parseLine(f Format, line string) (Record, error) {
	switch f {
	case JSONL:
		return parseJSON(line)
	case Envoy:
		return parseEnvoy(line)
	case Nginx:
		return parseNginx(line)
	}
	return Record{}, fmt.Errorf("unknown format %v", f)
}

// jsonRecord is a DESIGN.md §3 trace line.
type jsonRecord struct {
	TS       json.RawMessage   `json:"ts"`
	IP       string            `json:"ip"`
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Headers  map[string]string `json:"headers"`
	Label    string            `json:"label"`
	Scenario string            `json:"scenario"`
}

func parseJSON(line string) (Record, error) {
	var j jsonRecord
	if err := json.Unmarshal([]byte(line), &j); err != nil {
		return Record{}, fmt.Errorf("invalid JSON: %w", err)
	}
	ts, err := parseTS(j.TS)
	if err != nil {
		return Record{}, err
	}
	rec := Record{TS: ts, Method: j.Method, Path: j.Path, Label: j.Label, Scenario: j.Scenario}
	if j.IP != "" {
		a, ok := parseAddr(j.IP)
		if !ok {
			return Record{}, fmt.Errorf("ip %q is not an IP address", untrusted.Clip(j.IP, 64))
		}
		rec.Addr = a
	}
	if len(j.Headers) > 0 {
		rec.Headers = make(map[string]string, len(j.Headers))
		for k, v := range j.Headers {
			k = strings.ToLower(k)
			if k == "x-forwarded-for" {
				rec.XFF = v
				continue
			}
			rec.Headers[k] = v
		}
	}
	return rec, nil
}

// parseTS reads a trace's ts: an RFC 3339 string or a number of Unix
// seconds. Numbers are read exactly to the nanosecond when written in
// plain decimal notation.
func parseTS(raw json.RawMessage) (time.Time, error) {
	s := strings.TrimSpace(string(raw))
	switch {
	case s == "" || s == "null":
		return time.Time{}, errors.New("ts is missing")
	case s[0] == '"':
		var str string
		if err := json.Unmarshal(raw, &str); err != nil {
			return time.Time{}, fmt.Errorf("ts: %w", err)
		}
		t, err := time.Parse(time.RFC3339Nano, str)
		if err != nil {
			return time.Time{}, fmt.Errorf("ts %q is not an RFC 3339 time", untrusted.Clip(str, 64))
		}
		return t, nil
	}
	t, ok := unixSeconds(s)
	if !ok {
		return time.Time{}, fmt.Errorf("ts %s is neither an RFC 3339 string nor a number of Unix seconds", untrusted.Clip(s, 64))
	}
	return t, nil
}

// maxUnixSeconds bounds numeric timestamps so that they fit a
// time.Duration-based arithmetic in the engine (year 2262).
const maxUnixSeconds = math.MaxInt64/int64(time.Second) - 1

// unixSeconds reads a non-negative number of Unix seconds.
func unixSeconds(s string) (time.Time, bool) {
	intPart, frac, hasFrac := strings.Cut(s, ".")
	if !strings.ContainsAny(s, "eE+-") && intPart != "" && len(intPart) <= 11 && (!hasFrac || frac != "") {
		sec, err := strconv.ParseInt(intPart, 10, 64)
		if err == nil && sec <= maxUnixSeconds {
			var ns int64
			if hasFrac {
				for i := range 9 {
					ns *= 10
					if i < len(frac) {
						c := frac[i]
						if c < '0' || c > '9' {
							return time.Time{}, false
						}
						ns += int64(c - '0')
					}
				}
				for _, c := range []byte(frac[min(len(frac), 9):]) {
					if c < '0' || c > '9' {
						return time.Time{}, false
					}
				}
			}
			return time.Unix(sec, ns).UTC(), true
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > float64(maxUnixSeconds) || math.IsNaN(f) {
		return time.Time{}, false
	}
	sec, fr := math.Modf(f)
	return time.Unix(int64(sec), int64(math.Round(fr*1e9))).UTC(), true
}

// token is one field of an access-log line: a bare word, a "quoted"
// string or a [bracketed] one, without its delimiters.
type token struct {
	text    string
	quoted  bool
	bracket bool
}

// tokenize splits an access-log line into fields. A quoted field ends at a
// quote followed by a space or the end of the line, so quotes inside
// values (which Envoy and nginx write as they are or as \") do not end it
// early; a bracketed field ends at the first "]".
func tokenize(line string) ([]token, error) {
	var out []token
	for i := 0; i < len(line); {
		switch c := line[i]; {
		case c == ' ' || c == '\t':
			i++
		case c == '"':
			j := i + 1
			for ; j < len(line); j++ {
				if line[j] == '\\' {
					j++
					continue
				}
				if line[j] == '"' && (j+1 == len(line) || line[j+1] == ' ' || line[j+1] == '\t') {
					break
				}
			}
			if j >= len(line) {
				return nil, errors.New("unterminated quoted field")
			}
			out = append(out, token{text: line[i+1 : j], quoted: true})
			i = j + 1
		case c == '[':
			j := strings.IndexByte(line[i:], ']')
			if j < 0 {
				return nil, errors.New("unterminated [ field")
			}
			out = append(out, token{text: line[i+1 : i+j], bracket: true})
			i += j + 1
		default:
			j := strings.IndexAny(line[i:], " \t")
			if j < 0 {
				j = len(line) - i
			}
			out = append(out, token{text: line[i : i+j]})
			i += j
		}
	}
	return out, nil
}

// value returns a log field's value, "" for Envoy's and nginx's "-".
func value(t token) string {
	if t.text == "-" {
		return ""
	}
	return t.text
}

// requestLine reads "METHOD PATH PROTOCOL" (the protocol may be missing, as
// in HTTP/0.9 lines).
func requestLine(s string) (method, path string, err error) {
	f := strings.Fields(s)
	if len(f) < 2 || len(f) > 3 || f[0] == "-" || f[1] == "-" || !isMethod(f[0]) {
		return "", "", fmt.Errorf("request %q is not METHOD PATH PROTOCOL", untrusted.Clip(s, 64))
	}
	return f[0], f[1], nil
}

// isMethod reports whether s looks like an HTTP method token.
func isMethod(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range []byte(s) {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// parseEnvoy reads a line in Envoy's default access-log format (or Istio's).
func parseEnvoy(line string) (Record, error) {
	toks, err := tokenize(line)
	if err != nil {
		return Record{}, err
	}
	if len(toks) < 3 || !toks[0].bracket || !toks[1].quoted {
		return Record{}, errors.New(`not an Envoy access-log line: want [START_TIME] "METHOD PATH PROTOCOL" and the default fields`)
	}
	ts, err := time.Parse(time.RFC3339Nano, toks[0].text)
	if err != nil {
		return Record{}, fmt.Errorf("START_TIME %q is not an RFC 3339 time", untrusted.Clip(toks[0].text, 64))
	}
	method, path, err := requestLine(toks[1].text)
	if err != nil {
		return Record{}, err
	}
	// The run of quoted fields: X-FORWARDED-FOR, USER-AGENT, X-REQUEST-ID,
	// :AUTHORITY, UPSTREAM_HOST.
	run := -1
	for i := 2; i+3 < len(toks); i++ {
		if toks[i].quoted && toks[i+1].quoted && toks[i+2].quoted && toks[i+3].quoted {
			run = i
			break
		}
	}
	if run < 0 {
		return Record{}, errors.New(`no "X-FORWARDED-FOR" "USER-AGENT" "X-REQUEST-ID" "AUTHORITY" fields`)
	}
	rec := Record{TS: ts, Method: method, Path: path, XFF: value(toks[run])}
	if ua := value(toks[run+1]); ua != "" {
		rec.Headers = map[string]string{"user-agent": ua}
	}
	end := run + 4
	for end < len(toks) && toks[end].quoted {
		end++
	}
	extra := toks[end:]
	switch {
	case len(extra) >= 1 && isAddr(extra[0]):
		rec.Addr, _ = parseAddr(extra[0].text) // appended %DOWNSTREAM_REMOTE_ADDRESS%
	case len(extra) >= 4 && isAddr(extra[3]):
		rec.Addr, _ = parseAddr(extra[3].text) // Istio: cluster, upstream local, downstream local, downstream remote
	default:
		// The edge Envoy appends the peer it saw to X-Forwarded-For.
		if last := lastXFF(rec.XFF); last != "" {
			if a, ok := parseAddr(last); ok {
				rec.Addr = a
			}
		}
	}
	return rec, nil
}

func isAddr(t token) bool {
	if t.quoted || t.bracket {
		return false
	}
	_, ok := parseAddr(t.text)
	return ok
}

// lastXFF returns the rightmost entry of an X-Forwarded-For value.
func lastXFF(xff string) string {
	xff = strings.TrimRight(xff, " ,")
	if i := strings.LastIndexByte(xff, ','); i >= 0 {
		xff = xff[i+1:]
	}
	return strings.TrimSpace(xff)
}

// nginxTime is nginx's $time_local layout.
const nginxTime = "02/Jan/2006:15:04:05 -0700"

// parseNginx reads a line in nginx's combined format.
func parseNginx(line string) (Record, error) {
	toks, err := tokenize(line)
	if err != nil {
		return Record{}, err
	}
	b := -1
	for i, t := range toks {
		if t.bracket {
			b = i
			break
		}
	}
	if b < 1 || b+3 >= len(toks) || !toks[b+1].quoted {
		return Record{}, errors.New(`not an nginx combined line: want ADDR - USER [TIME] "REQUEST" STATUS BYTES and the combined fields`)
	}
	addr, ok := parseAddr(toks[0].text)
	if !ok {
		return Record{}, fmt.Errorf("$remote_addr %q is not an IP address", untrusted.Clip(toks[0].text, 64))
	}
	ts, err := time.Parse(nginxTime, toks[b].text)
	if err != nil {
		return Record{}, fmt.Errorf("$time_local %q is not like 10/Oct/2000:13:55:36 -0700", untrusted.Clip(toks[b].text, 64))
	}
	method, path, err := requestLine(toks[b+1].text)
	if err != nil {
		return Record{}, err
	}
	rec := Record{TS: ts, Addr: addr, Method: method, Path: path}
	if i := b + 5; i < len(toks) && toks[i].quoted {
		if ua := value(toks[i]); ua != "" {
			rec.Headers = map[string]string{"user-agent": ua}
		}
	}
	if i := b + 6; i < len(toks) && toks[i].quoted {
		rec.XFF = value(toks[i])
	}
	return rec, nil
}

// parseAddr reads an IP address, optionally with a port, the way the
// service reads an X-Forwarded-For entry.
func parseAddr(s string) (netip.Addr, bool) {
	a := authz.ClientAddr(s)
	return a, a.IsValid()
}
