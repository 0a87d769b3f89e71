package decoy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestRoutesMatch(t *testing.T) {
	r, err := ParseRoutes(" /data , /api/items/*,/api/users/*/orders,/api/tags/,/api/*/files/")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"/data": true, "/data/": false, "/data/1": false, "/dat": false, "/datax": false,
		"/api/items/1": true, "/api/items/abc": true, "/api/items": false, "/api/items/": false, "/api/items/1/x": false,
		"/api/users/7/orders": true, "/api/users//orders": false, "/api/users/7/orders/": false,
		// Subtrees, as in Go's http.ServeMux.
		"/api/tags/": true, "/api/tags/x": true, "/api/tags/x/y/": true, "/api/tags": false, "/api/tagsx": false,
		"/api/7/files/": true, "/api/7/files/a/b": true, "/api/7/files": false, "/api//files/": false,
		"/": false, "": false, "x": false,
	} {
		if got := r.Match(path); got != want {
			t.Errorf("Match(%q) = %v, want %v", path, got, want)
		}
	}
	// The mux redirects /tree to /tree/ when only the subtree is served,
	// and no other path.
	for path, want := range map[string]bool{
		"/api/tags": true, "/api/7/files": true,
		"/api/tags/": false, "/api/tags/x": false, "/api/7/files/x": false, "/api": false, "/data": false, "/api/items": false, "": false,
	} {
		if got := r.Redirect(path); got != want {
			t.Errorf("Redirect(%q) = %v, want %v", path, got, want)
		}
	}
	root, err := ParseRoutes("/")
	if err != nil {
		t.Fatal(err)
	}
	if !root.Match("/") || !root.Match("/any/path") || root.Redirect("/x") {
		t.Error(`"/" must be the subtree of every path, as in Go's mux`)
	}
	var none *Routes
	if !none.Match("/anything") || none.Redirect("/anything") {
		t.Error("nil Routes must match every path")
	}
}

func TestParseRoutesRefuses(t *testing.T) {
	for list, want := range map[string]string{
		"":                                 "no pattern",
		" , ":                              "no pattern",
		"data":                             `pattern "data": must start with /`,
		"/a?b=1":                           "query string",
		"/a b":                             "spaces",
		"/a//b":                            "empty segment",
		"/a/../b":                          ". and ..",
		"/a*":                              "whole segment",
		"/api/{id}":                        "use *",
		"/" + strings.Repeat("a", 300):     "longer than 256 bytes",
		strings.Repeat("/a", 40):           "more than 32 segments",
		strings.Repeat("/a,", MaxRoutes+1): "more than 256 patterns",
	} {
		_, err := ParseRoutes(list)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRoutes(%.40q) = %v, want an error with %q", list, err, want)
		}
	}
}

func TestReadNotFound(t *testing.T) {
	for name, tc := range map[string]struct {
		file       string
		status     int
		typ, body  string
		headerGone string
	}{
		"curl -si, HTTP/1.1": {"HTTP/1.1 404 Not Found\r\nContent-Type: application/problem+json\r\nDate: Sat, 05 Dec 2026 01:00:00 GMT\r\nContent-Length: 17\r\n\r\n{\"title\":\"gone\"}\n", 404, "application/problem+json", "{\"title\":\"gone\"}\n", "Date"},
		"curl -si, HTTP/2":   {"HTTP/2 404 \r\ncontent-type: text/plain; charset=utf-8\r\nx-content-type-options: nosniff\r\n\r\n404 page not found\n", 404, "text/plain; charset=utf-8", "404 page not found\n", "Content-Length"},
		"edited, LF":         {"HTTP/1.1 200 OK\nContent-Type: application/json\n\n{\"path\":\"{path}\"}", 200, "application/json", `{"path":"{path}"}`, "Connection"},
		"no body":            {"HTTP/1.1 410 Gone\r\n\r\n", 410, "", "", "Date"},
	} {
		nf, err := ReadNotFound(strings.NewReader(tc.file))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if nf.Status != tc.status || nf.Header.Get("Content-Type") != tc.typ || nf.Body != tc.body || nf.Header.Get(tc.headerGone) != "" {
			t.Errorf("%s: %+v", name, nf)
		}
	}
	for file, want := range map[string]string{
		"":                         "no header section",
		"<html>not found</html>\n": "want a status line",
		"HTTP/1.1 abc\r\n\r\n":     "status 200-599",
		"HTTP/1.1 101 Up\r\n\r\n":  "status 200-599",
		"HTTP/1.1 404 Not Found\n": "headers",
		"HTTP/1.1 404 x\nbad\n\nb": "headers",
		strings.Repeat("x", 70000): "larger than",
	} {
		if _, err := ReadNotFound(strings.NewReader(file)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadNotFound(%.30q) = %v, want an error with %q", file, err, want)
		}
	}
}

// TestBaitOffRoutes: with the API's routes the bait makes up documents on
// them only; elsewhere, for any method, and for OPTIONS anywhere, it
// answers the API's not-found answer, with the method and path filled in
// as encoding/json writes them; a write on a route is still refused. Every
// request is recorded.
func TestBaitOffRoutes(t *testing.T) {
	routes, err := ParseRoutes("/data,/api/users/*")
	if err != nil {
		t.Fatal(err)
	}
	nf, err := ReadNotFound(strings.NewReader("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nX-Api: v2\r\n\r\n{\"error\":\"no route\",\"method\":\"{method}\",\"path\":\"{path}\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ring := NewRing(64)
	srv := httptest.NewServer(NewBait(BaitOptions{Ring: ring, Routes: routes, NotFound: nf}))
	defer srv.Close()
	client := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	send := func(method, path string) (int, http.Header, string) {
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		body         string // a prefix
	}{
		{"GET", "/data", 200, `{"items":`},
		{"GET", "/data?page=2", 200, `{"items":`},
		{"GET", "/api/users/42", 200, `{"created_at":`},
		{"GET", "/definitely-not-a-route-8f3a", 404, `{"error":"no route","method":"GET","path":"/definitely-not-a-route-8f3a"}` + "\n"},
		{"GET", "/data/", 404, `{"error":"no route","method":"GET","path":"/data/"}`},
		{"GET", "/a%22%3C", 404, `{"error":"no route","method":"GET","path":"/a\"\u003c"}`},
		{"POST", "/login", 404, `{"error":"no route","method":"POST","path":"/login"}`},
		{"OPTIONS", "/data", 404, `{"error":"no route","method":"OPTIONS","path":"/data"}`},
		{"POST", "/data", 503, `{"error":"service temporarily unavailable`},
		{"GET", "//data", 307, `<a href="/data">`},
	} {
		code, h, body := send(tc.method, tc.path)
		if code != tc.status || !strings.HasPrefix(body, tc.body) {
			t.Errorf("%s %s: %d %q, want %d %q", tc.method, tc.path, code, body, tc.status, tc.body)
		}
		if code == 404 && (h.Get("X-Api") != "v2" || h.Get("Content-Type") != "application/json") {
			t.Errorf("%s %s: headers %v, want the not-found answer's", tc.method, tc.path, h)
		}
	}
	headLen := strconv.Itoa(len(`{"error":"no route","method":"HEAD","path":"/nope"}` + "\n"))
	if code, h, body := send("HEAD", "/nope"); code != 404 || body != "" || h.Get("Content-Length") != headLen {
		t.Errorf("HEAD /nope: %d %q %v, want the 404's headers and length, no body", code, body, h)
	}
	if s := ring.Summary(); s.Total != 11 {
		t.Errorf("recorded %d requests, want all 11", s.Total)
	}

	// Without a not-found answer: a JSON 404.
	srv2 := httptest.NewServer(NewBait(BaitOptions{Ring: NewRing(4), Routes: routes}))
	defer srv2.Close()
	resp, err := client.Get(srv2.URL + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" || string(b) != `{"error":"not found"}`+"\n" {
		t.Errorf("default not-found: %s %v %q", resp.Status, resp.Header, b)
	}
}

// BenchmarkRoutesMatch: a request path against 256 patterns, none of
// which matches: a path of a few segments, and a path of one 60 KiB
// segment (the server takes headers up to 64 KiB, request line included)
// against patterns that start with a literal segment, compared as a
// prefix, and against patterns that start with *, which must find the end
// of the segment each time: the most work a request can cost, and the
// reason --routes holds 256 patterns at most.
func BenchmarkRoutesMatch(b *testing.B) {
	long := "/" + strings.Repeat("a", 60<<10)
	for _, bc := range []struct{ name, pattern, path string }{
		{"short", "/api/v1/resource%d/*/items/*", "/api/v1/resource9/42/items/7/x"},
		{"60KiB", "/api/v1/resource%d/*/items/*", long},
		{"60KiB-star-first", "/*/resource%d/items", long},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var list []string
			for i := range MaxRoutes {
				list = append(list, fmt.Sprintf(bc.pattern, i))
			}
			r, err := ParseRoutes(strings.Join(list, ","))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if r.Match(bc.path) {
					b.Fatal("matched")
				}
			}
		})
	}
}

// FuzzRoutesMatch: Match agrees with the plain reading of a pattern, the
// path split at every '/' and compared segment by segment.
func FuzzRoutesMatch(f *testing.F) {
	f.Add("/api/items/*", "/api/items/7")
	f.Add("/api/tags/", "/api/tags/x/y")
	f.Add("/*/x", "/a/x/")
	f.Add("/", "/anything")
	f.Fuzz(func(t *testing.T, pattern, path string) {
		r, err := ParseRoutes(pattern)
		if err != nil || strings.Contains(pattern, ",") {
			return
		}
		segs := strings.Split(strings.TrimSpace(pattern)[1:], "/")
		subtree := segs[len(segs)-1] == ""
		if subtree {
			segs = segs[:len(segs)-1]
		}
		want, redirect := false, false
		if path != "" && path[0] == '/' {
			got := strings.Split(path[1:], "/")
			same := func(n int) bool { // the path's first n segments are the pattern's
				for i := range n {
					if got[i] != segs[i] && (segs[i] != "*" || got[i] == "") {
						return false
					}
				}
				return true
			}
			want = (!subtree && len(got) == len(segs) || subtree && len(got) > len(segs)) && same(len(segs))
			// The mux redirects /tree to the subtree /tree/.
			redirect = subtree && !want && len(got) == len(segs) && same(len(segs))
		}
		if r.Match(path) != want {
			t.Errorf("Match(%q) with %q = %v, want %v", path, pattern, !want, want)
		}
		if r.Redirect(path) != redirect {
			t.Errorf("Redirect(%q) with %q = %v, want %v", path, pattern, !redirect, redirect)
		}
	})
}
