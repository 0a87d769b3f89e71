package replay

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

// readAll reads every record of r, collecting line errors.
func readAll(t *testing.T, r *Reader) ([]Record, []*LineError) {
	t.Helper()
	var recs []Record
	var bad []*LineError
	for {
		rec, err := r.Next()
		var le *LineError
		switch {
		case err == nil:
			recs = append(recs, rec)
		case errors.Is(err, io.EOF):
			return recs, bad
		case errors.As(err, &le):
			bad = append(bad, le)
		default:
			t.Fatal(err)
		}
	}
}

func openTestdata(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestParseJSON(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		ts      string // RFC 3339, compared with Equal
		addr    string
		xff     string
		header  [2]string
		wantErr string
	}{
		{name: "rfc3339", line: `{"ts":"2026-01-05T09:00:00.123456Z","ip":"203.0.113.7","method":"GET","path":"/data"}`,
			ts: "2026-01-05T09:00:00.123456Z", addr: "203.0.113.7"},
		{name: "offset", line: `{"ts":"2026-01-05T10:00:00+01:00","ip":"203.0.113.7"}`,
			ts: "2026-01-05T09:00:00Z", addr: "203.0.113.7"},
		{name: "float seconds exact", line: `{"ts":1767603600.000001,"ip":"203.0.113.7"}`,
			ts: "2026-01-05T09:00:00.000001Z", addr: "203.0.113.7"},
		{name: "integer seconds", line: `{"ts":1767603600,"ip":"203.0.113.7"}`, ts: "2026-01-05T09:00:00Z", addr: "203.0.113.7"},
		{name: "long fraction truncated to ns", line: `{"ts":1767603600.1234567899,"ip":"203.0.113.7"}`,
			ts: "2026-01-05T09:00:00.123456789Z", addr: "203.0.113.7"},
		{name: "exponent", line: `{"ts":1.7676036005e9,"ip":"203.0.113.7"}`, ts: "2026-01-05T09:00:00.5Z", addr: "203.0.113.7"},
		{name: "ip with port, headers", line: `{"ts":"2026-01-05T09:00:00Z","ip":"[2001:db8::1]:4711","headers":{"X-Forwarded-For":"198.51.100.1, 10.0.0.1","X-Api-Key":"k"}}`,
			ts: "2026-01-05T09:00:00Z", addr: "2001:db8::1", xff: "198.51.100.1, 10.0.0.1", header: [2]string{"x-api-key", "k"}},
		{name: "no ip", line: `{"ts":"2026-01-05T09:00:00Z","headers":{"x-forwarded-for":"198.51.100.1"}}`,
			ts: "2026-01-05T09:00:00Z", xff: "198.51.100.1"},
		{name: "missing ts", line: `{"ip":"203.0.113.7"}`, wantErr: "ts is missing"},
		{name: "bad ts", line: `{"ts":"5 past 9","ip":"203.0.113.7"}`, wantErr: "not an RFC 3339 time"},
		{name: "negative ts", line: `{"ts":-1,"ip":"203.0.113.7"}`, wantErr: "neither"},
		{name: "bool ts", line: `{"ts":true,"ip":"203.0.113.7"}`, wantErr: "neither"},
		{name: "bad ip", line: `{"ts":1,"ip":"localhost"}`, wantErr: `ip "localhost"`},
		{name: "bad json", line: `{"ts":1,`, wantErr: "invalid JSON"},
		{name: "wrong type", line: `{"ts":1,"ip":7}`, wantErr: "invalid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := parseLine(JSONL, tc.line)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if want := mustTime(t, tc.ts); !rec.TS.Equal(want) {
				t.Errorf("ts = %v, want %v", rec.TS, want)
			}
			if got := addrString(rec.Addr); got != tc.addr {
				t.Errorf("addr = %q, want %q", got, tc.addr)
			}
			if rec.XFF != tc.xff || rec.Header("x-forwarded-for") != tc.xff {
				t.Errorf("xff = %q, want %q", rec.XFF, tc.xff)
			}
			if tc.header[0] != "" && rec.Header(tc.header[0]) != tc.header[1] {
				t.Errorf("header %s = %q, want %q", tc.header[0], rec.Header(tc.header[0]), tc.header[1])
			}
		})
	}
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func TestParseEnvoy(t *testing.T) {
	const ua = "Mozilla/5.0 (X11; Linux x86_64)"
	tests := []struct {
		name          string
		line          string
		ts, addr, xff string
		path          string
		wantErr       string
	}{
		{
			name: "default format, client from x-forwarded-for",
			line: `[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100 "10.0.35.28, 203.0.113.7" "` + ua + `" "005c5a3c-1b1e-4b2c-9d2e-000000000001" "locations" "tcp://10.0.2.1:80"`,
			ts:   "2016-04-15T20:17:00.310Z", addr: "203.0.113.7", xff: "10.0.35.28, 203.0.113.7", path: "/api/v1/locations",
		},
		{
			name: "downstream remote address appended",
			line: `[2016-04-15T20:17:00.310Z] "GET /x?y=1 HTTP/1.1" 200 - 0 12 3 2 "-" "-" "-" "api" "10.0.2.1:80" 198.51.100.4:51234`,
			ts:   "2016-04-15T20:17:00.310Z", addr: "198.51.100.4", path: "/x?y=1",
		},
		{
			name: "istio",
			line: `[2026-01-05T09:10:01.123Z] "GET /api/orders HTTP/1.1" 200 - via_upstream - "-" 0 1432 12 11 "-" "okhttp/4.12.0" "0f3b" "api.example.com" "10.8.0.14:8080" outbound|8080||api.default.svc.cluster.local 10.8.0.9:50124 10.8.0.9:8080 192.0.2.50:39112 - default`,
			ts:   "2026-01-05T09:10:01.123Z", addr: "192.0.2.50", path: "/api/orders",
		},
		{
			name: "no address at all",
			line: `[2016-04-15T20:17:00.310Z] "GET / HTTP/1.1" 200 - 0 12 3 2 "-" "-" "-" "api" "10.0.2.1:80"`,
			ts:   "2016-04-15T20:17:00.310Z", path: "/",
		},
		{name: "truncated", line: `[2016-04-15T20:17:00.310Z] "GET / HTTP/1.1" 200 - 0 12 "1.2.3.4`, wantErr: "unterminated"},
		{name: "bad time", line: `[yesterday] "GET / HTTP/1.1" 200 - 0 1 1 1 "-" "-" "-" "-" "-"`, wantErr: "START_TIME"},
		{name: "tcp line", line: `[2016-04-15T20:17:00.310Z] "- - -" 0 - 0 0 1 - "-" "-" "-" "-" "10.0.2.1:80"`, wantErr: "not METHOD PATH"},
		{name: "no quoted run", line: `[2016-04-15T20:17:00.310Z] "GET / HTTP/1.1" 200`, wantErr: "X-FORWARDED-FOR"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := parseLine(Envoy, tc.line)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !rec.TS.Equal(mustTime(t, tc.ts)) || addrString(rec.Addr) != tc.addr || rec.XFF != tc.xff || rec.Path != tc.path {
				t.Errorf("got ts %v addr %v xff %q path %q, want %s %s %q %q", rec.TS, rec.Addr, rec.XFF, rec.Path, tc.ts, tc.addr, tc.xff, tc.path)
			}
		})
	}
	rec, _ := parseLine(Envoy, tests[0].line)
	if rec.Method != "POST" || rec.Header("user-agent") != ua {
		t.Errorf("method %q, user agent %q", rec.Method, rec.Header("user-agent"))
	}
}

func TestParseNginx(t *testing.T) {
	tests := []struct {
		name          string
		line          string
		ts, addr, xff string
		wantErr       string
	}{
		{
			name: "combined",
			line: `127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"`,
			ts:   "2000-10-10T20:55:36Z", addr: "127.0.0.1",
		},
		{
			name: "main, with x-forwarded-for",
			line: `10.0.0.5 - - [05/Jan/2026:10:10:02 +0100] "GET /api/items/42 HTTP/1.1" 200 512 "-" "curl/8" "192.0.2.77"`,
			ts:   "2026-01-05T09:10:02Z", addr: "10.0.0.5", xff: "192.0.2.77",
		},
		{
			name: "ipv6",
			line: `2001:db8::5 - - [05/Jan/2026:10:10:02 +0000] "HEAD / HTTP/1.1" 200 0 "-" "-"`,
			ts:   "2026-01-05T10:10:02Z", addr: "2001:db8::5",
		},
		{name: "bad request line", line: `203.0.113.9 - - [05/Jan/2026:10:00:58 +0100] "\x16\x03\x01" 400 157 "-" "-"`, wantErr: "not METHOD PATH"},
		{name: "bad time", line: `198.51.100.24 - - [5/Jan/2026 10:10:11] "GET / HTTP/1.1" 200 10 "-" "-"`, wantErr: "$time_local"},
		{name: "bad addr", line: `host - - [05/Jan/2026:10:10:02 +0000] "GET / HTTP/1.1" 200 0 "-" "-"`, wantErr: "$remote_addr"},
		{name: "short", line: `203.0.113.9 - - [05/Jan/2026:10:00:58 +0100]`, wantErr: "not an nginx combined line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := parseLine(Nginx, tc.line)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !rec.TS.Equal(mustTime(t, tc.ts)) || addrString(rec.Addr) != tc.addr || rec.XFF != tc.xff {
				t.Errorf("got ts %v addr %v xff %q, want %s %s %q", rec.TS, rec.Addr, rec.XFF, tc.ts, tc.addr, tc.xff)
			}
		})
	}
}

func TestDetect(t *testing.T) {
	for line, want := range map[string]Format{
		`{"ts":1}`: JSONL,
		`  [2016-04-15T20:17:00.310Z] "GET / HTTP/1.1"`:               Envoy,
		`127.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0"`: Nginx,
		`::1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.0"`:       Nginx,
	} {
		if got, err := Detect(line); err != nil || got != want {
			t.Errorf("Detect(%q) = %v, %v; want %v", line, got, err, want)
		}
	}
	if _, err := Detect("GET / HTTP/1.1"); err == nil {
		t.Error("Detect accepted a request line")
	}
	for _, f := range []Format{Auto, JSONL, Envoy, Nginx} {
		if g, ok := ParseFormat(f.String()); !ok || g != f {
			t.Errorf("ParseFormat(%q) = %v, %v", f, g, ok)
		}
	}
	if _, ok := ParseFormat("csv"); ok {
		t.Error("ParseFormat accepted csv")
	}
}

func TestReaderMalformed(t *testing.T) {
	r := NewReader(openTestdata(t, "malformed.jsonl"), "malformed.jsonl", Auto)
	recs, bad := readAll(t, r)
	if r.Format() != JSONL {
		t.Errorf("format = %v, want jsonl", r.Format())
	}
	var lines []int
	for _, rec := range recs {
		lines = append(lines, rec.Line)
	}
	if got, want := lines, []int{1, 5, 9, 11}; !equalInts(got, want) {
		t.Errorf("good lines %v, want %v", got, want)
	}
	var badLines []int
	for _, e := range bad {
		badLines = append(badLines, e.Line)
		if !strings.HasPrefix(e.Error(), "malformed.jsonl:") {
			t.Errorf("error %q does not name the file and line", e)
		}
	}
	if got, want := badLines, []int{4, 6, 7, 8, 10}; !equalInts(got, want) {
		t.Errorf("bad lines %v, want %v", got, want)
	}
	if recs[2].Addr != netip.MustParseAddr("192.0.2.1") || recs[2].XFF != "198.51.100.9" || recs[2].Header("x-api-key") != "k1" {
		t.Errorf("line 9 = %+v", recs[2])
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReaderLongLineAndNoNewline(t *testing.T) {
	in := `{"ts":1,"ip":"192.0.2.1","path":"/` + strings.Repeat("a", MaxLineLen) + `"}` + "\n" +
		`{"ts":2,"ip":"192.0.2.1"}` + "\r\n" +
		`{"ts":3,"ip":"192.0.2.1"}` // no final newline
	recs, bad := readAll(t, NewReader(strings.NewReader(in), "-", JSONL))
	if len(bad) != 1 || bad[0].Line != 1 || !strings.Contains(bad[0].Error(), "longer than") {
		t.Errorf("bad = %v, want line 1 too long", bad)
	}
	if len(recs) != 2 || recs[0].Line != 2 || recs[1].Line != 3 || recs[1].TS.Unix() != 3 {
		t.Errorf("records = %+v", recs)
	}
}

func TestReaderUnknownFormat(t *testing.T) {
	_, bad := readAll(t, NewReader(strings.NewReader("\n\nhello world\n"), "x.log", Auto))
	if len(bad) != 1 || bad[0].Line != 3 {
		t.Fatalf("bad = %v, want line 3", bad)
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestReaderReadError(t *testing.T) {
	r := NewReader(failingReader{}, "x", JSONL)
	for range 2 {
		if _, err := r.Next(); err == nil || !strings.Contains(err.Error(), "disk on fire") {
			t.Fatalf("err = %v", err)
		}
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		`{"ts":1767603600.5,"ip":"203.0.113.7","headers":{"x-forwarded-for":"1.2.3.4"}}`,
		`[2016-04-15T20:17:00.310Z] "GET / HTTP/1.1" 200 - 0 12 3 2 "-" "-" "-" "api" "10.0.2.1:80" 198.51.100.4:51234`,
		`127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "-" "-"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		for _, format := range []Format{JSONL, Envoy, Nginx} {
			rec, err := parseLine(format, line)
			if err != nil {
				continue
			}
			if rec.Addr.IsValid() && rec.Addr.Zone() != "" {
				t.Errorf("%v: address with zone %v", format, rec.Addr)
			}
		}
	})
}
