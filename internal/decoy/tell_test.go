package decoy

// From the w3 review: ways a quarantined bot can still tell the decoy from
// the API behind the same proxy, found against a Go API shaped like the
// demo's sample-api (a catch-all that answers without reading the body).

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/httpcmd"
)

// serveTell serves h with the decoy's and sample-api's server settings
// (httpcmd.Serve) and returns its address.
func serveTell(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = httpcmd.Serve(ctx, ln, h); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// sampleAPI answers as cmd/sample-api does without Flow Lock: GET /data a
// document, anything else a 200 that names the method and path. Like most
// API handlers off their routes, it never reads the request body.
func sampleAPI() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /data", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(map[string]any{"items": []int{1}})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_ = json.NewEncoder(w).Encode(struct {
			Method string `json:"method"`
			Path   string `json:"path"`
		}{r.Method, r.URL.Path})
	})
	return mux
}

// demoDecoy is the bait with docker-compose.yml's flags: --routes /data
// and deploy/honeypot/sample-api-not-found.http.
func demoDecoy(t *testing.T) http.Handler {
	t.Helper()
	routes, err := ParseRoutes("/data")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("../../deploy/honeypot/sample-api-not-found.http")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	nf, err := ReadNotFound(f)
	if err != nil {
		t.Fatal(err)
	}
	return NewBait(BaitOptions{Ring: NewRing(64), Routes: routes, NotFound: nf})
}

// firstAnswer sends raw and returns the first status line and its
// Connection header, or "(no answer within 2s)".
func firstAnswer(t *testing.T, addr, raw string) (status, connection string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second)) // the write too
	if _, err := c.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	r := textproto.NewReader(bufio.NewReader(c))
	line, err := r.ReadLine()
	if err != nil {
		return "(no answer within 2s: " + err.Error() + ")", ""
	}
	h, _ := r.ReadMIMEHeader()
	return line, h.Get("Connection")
}

// TestDecoyAnswersBeforeTheBodyAsTheAPIDoes: the bait reads up to
// 1 MiB of every request body before it answers (Bait.ServeHTTP's
// io.Copy), on every path; an API's not-found or catch-all handler does
// not, and net/http then answers it without the body. So:
//   - Expect: 100-continue: the API answers at once (and closes); the
//     decoy first sends "100 Continue", on any path.
//   - a body declared at 256 KiB or more but not (yet) sent: the API
//     answers at once with Connection: close; the decoy waits for the body
//     until its 10 s read timeout.
//
// Either is one request, from any HTTP client, that tells the decoy.
func TestDecoyAnswersBeforeTheBodyAsTheAPIDoes(t *testing.T) {
	api, dec := serveTell(t, sampleAPI()), serveTell(t, demoDecoy(t))
	for name, raw := range map[string]string{
		"expect 100-continue": "POST /login HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\n" +
			"Content-Length: 20\r\nExpect: 100-continue\r\n\r\n",
		"large body declared": "POST /upload HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/octet-stream\r\n" +
			"Content-Length: 500000\r\n\r\n" + strings.Repeat("x", 1000),
	} {
		as, ac := firstAnswer(t, api, raw)
		ds, dc := firstAnswer(t, dec, raw)
		if as != ds || ac != dc {
			t.Errorf("%s: the API answers %q (Connection %q), the decoy %q (Connection %q)", name, as, ac, ds, dc)
		}
	}
}

// TestNotFoundReplaysPerRequestHeaders: a capture made as the
// README says (curl -si https://your-api/no-such-path) carries headers an
// API or its CDN/load balancer sets afresh for every answer: a session or
// stickiness cookie, a request id, a trace id. ReadNotFound drops only
// Date, Content-Length, Transfer-Encoding, Connection and Keep-Alive, so
// the decoy sends the one captured value to every bot for ever: two
// requests that get the same "fresh" request id (or session cookie) tell
// the decoy, and the operator's captured session cookie is handed out.
func TestNotFoundReplaysPerRequestHeaders(t *testing.T) {
	capture := "HTTP/2 404 \r\n" +
		"content-type: application/json\r\n" +
		"date: Sat, 05 Dec 2026 01:00:00 GMT\r\n" +
		"set-cookie: AWSALB=Jx2m9cXq0k1; Expires=Sat, 12 Dec 2026 01:00:00 GMT; Path=/\r\n" +
		"set-cookie: session=5f1c9e2a7b; Path=/; HttpOnly\r\n" +
		"x-request-id: 1b9d6bcd-bbfd-4b2d-9b5d-ab8dfbbd4bed\r\n" +
		"x-amzn-trace-id: Root=1-67891233-abcdef012345678912345678\r\n" +
		"content-length: 22\r\n\r\n" +
		`{"error":"not found"}` + "\n"
	nf, err := ReadNotFound(strings.NewReader(capture))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"Set-Cookie", "X-Request-Id", "X-Amzn-Trace-Id"} {
		if v := nf.Header.Values(k); len(v) > 0 {
			t.Errorf("%s %q is kept from the capture and sent, the same, in every answer (or refuse the file, naming it)", k, v)
		}
	}
}

// TestNotFoundBehindAProxyCapture: curl -si through an HTTPS proxy
// (https_proxy set, as on many operators' machines) prints the proxy's
// "HTTP/1.1 200 Connection established" block before the API's answer.
// ReadNotFound takes that block as the answer: status 200, no headers, and
// the API's whole answer, status line and headers included, as the body.
// It should refuse such a file or read the last block.
func TestNotFoundBehindAProxyCapture(t *testing.T) {
	capture := "HTTP/1.1 200 Connection established\r\n\r\n" +
		"HTTP/2 404 \r\ncontent-type: application/json\r\n\r\n" + `{"error":"not found"}` + "\n"
	nf, err := ReadNotFound(strings.NewReader(capture))
	if err != nil {
		return // refused: fine
	}
	if nf.Status != 404 || strings.Contains(nf.Body, "HTTP/2") {
		t.Errorf("read as status %d, Content-Type %q, body %q", nf.Status, nf.Header.Get("Content-Type"), nf.Body)
	}
}

// TestSubtreeRouteAsGoRouter: docs/RATIONALE.md says routes take
// "the shape of the routes in ... a Go ServeMux" and that "the trailing
// slash does [play a part], as in Go's router". In a Go ServeMux a pattern
// ending in / is a subtree: "/api/items/" serves /api/items/42, and
// /api/items is redirected (301) to /api/items/. The decoy given the same
// pattern answers the not-found answer for both, so a bot that compares
// GET /api/items (or /api/items/42) with what it saw before can tell.
func TestSubtreeRouteAsGoRouter(t *testing.T) {
	apiMux := http.NewServeMux()
	apiMux.HandleFunc("/api/items/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":42}`))
	})
	apiMux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(404)
		_, _ = w.Write([]byte(`{"error":"not found"}`))
	})
	routes, err := ParseRoutes("/api/items/")
	if err != nil {
		t.Fatal(err)
	}
	api := serveTell(t, apiMux)
	dec := serveTell(t, NewBait(BaitOptions{Ring: NewRing(64), Routes: routes}))
	for _, path := range []string{"/api/items", "/api/items/42"} {
		raw := "GET " + path + " HTTP/1.1\r\nHost: api.example.com\r\n\r\n"
		as, _ := firstAnswer(t, api, raw)
		ds, _ := firstAnswer(t, dec, raw)
		if as != ds {
			t.Errorf("GET %s: the API answers %q, the decoy with --routes /api/items/ %q", path, as, ds)
		}
	}
}

// FuzzReadNotFound: any file is read or refused, never a panic,
// and what is read is bounded by the file. (Ran 30 s without a finding.)
func FuzzReadNotFound(f *testing.F) {
	f.Add("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{}")
	f.Add("HTTP/2 404 \nx: y\n\nbody")
	f.Add("HTTP/1.1 200 Connection established\r\n\r\nHTTP/2 404 \r\n\r\n")
	f.Fuzz(func(t *testing.T, file string) {
		nf, err := ReadNotFound(strings.NewReader(file))
		if err == nil && len(nf.Body) > len(file) {
			t.Fatalf("body %d bytes from a %d-byte file", len(nf.Body), len(file))
		}
	})
}

// TestNotFoundMixedLineEnds: a file whose headers end in LF and
// whose empty line is CRLF (an editor that adds CR to the line it
// touched) is accepted, as textproto reads the headers, but the body is
// looked for by "\r\n\r\n" or "\n\n" only: it is lost, and the decoy
// answers an empty body where the API has one. It should read the body
// after the line that ended the headers, or refuse the file.
func TestNotFoundMixedLineEnds(t *testing.T) {
	nf, err := ReadNotFound(strings.NewReader("HTTP/1.1 404 Not Found\nContent-Type: application/json\n\r\n{\"error\":\"not found\"}\n"))
	if err != nil {
		return // refused: fine
	}
	if nf.Body != "{\"error\":\"not found\"}\n" {
		t.Errorf("body %q, want the file's", nf.Body)
	}
}

// TestSubtreeRedirectAsGoRouter: the redirect of /tree to /tree/ is the
// mux's own answer, query kept, for a read and a write.
func TestSubtreeRedirectAsGoRouter(t *testing.T) {
	apiMux := http.NewServeMux()
	apiMux.HandleFunc("/api/items/", func(http.ResponseWriter, *http.Request) {})
	routes, err := ParseRoutes("/data,/api/items/")
	if err != nil {
		t.Fatal(err)
	}
	bait := NewBait(BaitOptions{Ring: NewRing(8), Routes: routes})
	for _, method := range []string{"GET", "HEAD", "POST"} {
		want, got := httptest.NewRecorder(), httptest.NewRecorder()
		apiMux.ServeHTTP(want, httptest.NewRequest(method, "/api/items?page=2&q=a%20b", nil))
		bait.ServeHTTP(got, httptest.NewRequest(method, "/api/items?page=2&q=a%20b", nil))
		if got.Code != want.Code || got.Header().Get("Location") != want.Header().Get("Location") ||
			got.Header().Get("Content-Type") != want.Header().Get("Content-Type") || got.Body.String() != want.Body.String() {
			t.Errorf("%s: the decoy answers %d %v %q, Go's mux %d %v %q", method, got.Code, got.Header(), got.Body, want.Code, want.Header(), want.Body)
		}
	}
}

// TestBaitRecordsDeclaredBodySize: the bait reads no body, so it records
// the size the request declares; a chunked body's is unknown.
func TestBaitRecordsDeclaredBodySize(t *testing.T) {
	ring := NewRing(8)
	addr := serveTell(t, NewBait(BaitOptions{Ring: ring}))
	for _, raw := range []string{
		"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
		"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 9223372036854775807\r\n\r\nx",
	} {
		if status, _ := firstAnswer(t, addr, raw); !strings.HasPrefix(status, "HTTP/1.1 503") {
			t.Fatalf("%q: %s", raw, status)
		}
	}
	want := map[string]Record{"/a": {BodyBytes: 5}, "/b": {BodyUnsized: true}, "/c": {BodyBytes: MaxBody, BodyCut: true}}
	for deadline := time.Now().Add(2 * time.Second); len(ring.Latest(8, "")) < len(want) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // the record is added after the answer
	}
	got := ring.Latest(8, "")
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for _, r := range got {
		if w := want[r.Path]; r.BodyBytes != w.BodyBytes || r.BodyCut != w.BodyCut || r.BodyUnsized != w.BodyUnsized {
			t.Errorf("%s: body %d cut %v unsized %v, want %d %v %v", r.Path, r.BodyBytes, r.BodyCut, r.BodyUnsized, w.BodyBytes, w.BodyCut, w.BodyUnsized)
		}
	}
}

// TestReadNotFoundCaptures: what curl -si prints in other cases.
func TestReadNotFoundCaptures(t *testing.T) {
	for name, tc := range map[string]struct {
		file          string
		status        int
		body          string
		kept, dropped []string
	}{
		"100 Continue first": {"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n\r\n{}\n", 404, "{}\n", []string{"Content-Type"}, nil},
		"redirect followed":  {"HTTP/1.1 301 Moved Permanently\r\nLocation: /x/\r\nContent-Length: 0\r\n\r\nHTTP/1.1 404 Not Found\r\n\r\nnope", 404, "nope", nil, nil},
		"dated and not": {"HTTP/1.1 404 Not Found\r\nExpires: 0\r\nLast-Modified: Sat, 05 Dec 2026 01:00:00 GMT\r\n" +
			"Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\nCf-Ray: 8a1b2c3d4e5f-AMS\r\nEtag: W/\"1\"\r\nAge: 3\r\n\r\n",
			404, "", []string{"Expires"}, []string{"Age", "Cf-Ray", "Etag", "Last-Modified", "Traceparent"}},
	} {
		nf, err := ReadNotFound(strings.NewReader(tc.file))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if nf.Status != tc.status || nf.Body != tc.body || strings.Join(nf.Dropped, ",") != strings.Join(tc.dropped, ",") {
			t.Errorf("%s: status %d body %q dropped %v, want %d %q %v", name, nf.Status, nf.Body, nf.Dropped, tc.status, tc.body, tc.dropped)
		}
		for _, k := range tc.kept {
			if nf.Header.Get(k) == "" {
				t.Errorf("%s: %s not kept: %v", name, k, nf.Header)
			}
		}
	}
	if _, err := ReadNotFound(strings.NewReader("HTTP/1.1 100 Continue\r\n\r\n")); err == nil || !strings.Contains(err.Error(), "interim") {
		t.Errorf("an interim answer alone: %v, want refused", err)
	}
}
