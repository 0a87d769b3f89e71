package decoy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// decoy is the bait and the API over one ring, on real HTTP servers.
type decoy struct {
	ring      *Ring
	bait, api *httptest.Server
}

// newDecoy serves a ring of DefaultCapacity; idHeader "" means
// X-Forwarded-For.
func newDecoy(t *testing.T, idHeader string) *decoy {
	t.Helper()
	d := &decoy{ring: NewRing(DefaultCapacity)}
	d.bait = httptest.NewServer(NewBait(BaitOptions{Ring: d.ring, IdentityHeader: idHeader}))
	d.api = httptest.NewServer(API(d.ring))
	t.Cleanup(d.bait.Close)
	t.Cleanup(d.api.Close)
	return d
}

func (d *decoy) send(t *testing.T, method, path string, headers map[string]string, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, d.bait.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestBaitAnswersAnything: any read of any path gets plausible JSON, the
// same content for the same path, and nothing of the records; a write gets
// a JSON error.
func TestBaitAnswersAnything(t *testing.T) {
	d := newDecoy(t, "")
	for _, tc := range []struct {
		method, path string
		code         int
		key          string // a key the document has
	}{
		{"GET", "/data", 200, "items"},
		{"GET", "/api/users/42", 200, "status"},
		{"POST", "/login", 503, "error"},         // a write is refused, never acknowledged
		{"GET", "/api/v1/summary", 200, "items"}, // the API's path on the bait: bait
		{"DELETE", "/admin/../etc/passwd", 503, "error"},
	} {
		code, body := d.send(t, tc.method, tc.path, nil, "")
		var doc map[string]any
		if err := json.Unmarshal([]byte(body), &doc); err != nil || code != tc.code || doc[tc.key] == nil {
			t.Errorf("%s %s: %d %q (%v), want %d with %q", tc.method, tc.path, code, body, err, tc.code, tc.key)
		}
		if strings.Contains(body, "top_paths") || strings.Contains(body, "records") {
			t.Errorf("%s %s: the bait shows records: %s", tc.method, tc.path, body)
		}
	}
	_, a := d.send(t, "GET", "/api/users/42", nil, "")
	_, b := d.send(t, "GET", "/api/users/42", nil, "")
	strip := func(s string) string { return s[:strings.Index(s, `"status"`)] }
	if strip(a) != strip(b) {
		t.Errorf("the same path made up different documents: %s / %s", a, b)
	}
}

// TestBaitRecordsMasked: what is recorded is bounded and holds no secret:
// credentials, cookies and API keys by length only, query values dropped,
// a name identity masked, an address as it is.
func TestBaitRecordsMasked(t *testing.T) {
	const key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
	for _, tc := range []struct {
		idHeader, idValue, want string
	}{
		{"", "198.51.100.1, 203.0.113.7", "203.0.113.7"}, // rightmost X-Forwarded-For entry
		{"x-api-key", key, "key:"},                       // masked
		{"", "", "(none)"},
	} {
		d := newDecoy(t, tc.idHeader)
		h := map[string]string{
			"Authorization": "Bearer secret-bearer", "Cookie": "session=secret-cookie", "X-Csrf-Token": "secret-csrf",
			"User-Agent": "python-requests/2.32", "X-Weird": "a\u200bb",
		}
		if tc.idValue != "" {
			name := tc.idHeader
			if name == "" {
				name = "X-Forwarded-For"
			}
			h[name] = tc.idValue
		}
		d.send(t, "POST", "/login?user=admin&password=hunter2", h, strings.Repeat("x", 300))
		var got struct{ Records []Record }
		getJSON(t, d.api.URL+"/api/v1/records", &got)
		if len(got.Records) != 1 {
			t.Fatalf("records = %+v", got.Records)
		}
		r := got.Records[0]
		raw, _ := json.Marshal(r)
		for _, secret := range []string{"secret-bearer", "secret-cookie", "secret-csrf", "hunter2", "admin", key[:12], "\u200b"} {
			if strings.Contains(string(raw), secret) {
				t.Errorf("record holds %q: %s", secret, raw)
			}
		}
		if !strings.HasPrefix(r.Identity, tc.want) || r.Method != "POST" || r.Path != "/login" || r.Query != "user=…&password=…" || r.BodyBytes != 300 {
			t.Errorf("record = %s", raw)
		}
		if !strings.Contains(string(raw), `python-requests/2.32`) || !strings.Contains(string(raw), `(masked, 20 bytes)`) {
			t.Errorf("record lacks the user agent or the masked authorization: %s", raw)
		}
	}
}

// TestBaitBounds: a hostile request cannot make a record grow: headers,
// lengths and the body read are capped.
func TestBaitBounds(t *testing.T) {
	d := newDecoy(t, "")
	h := map[string]string{}
	for i := range 100 {
		h[fmt.Sprintf("X-H%d", i)] = strings.Repeat("v", 1000)
	}
	d.send(t, "PUT", "/"+strings.Repeat("p", 2000), h, strings.Repeat("b", MaxBody+10))
	r := d.ring.Latest(1, "")[0]
	if len(r.Headers) > maxHeaders || len(r.Path) > maxPath+len("…") || !r.BodyCut || r.BodyBytes != MaxBody {
		t.Errorf("record not bounded: %d headers, path %d bytes, body %d cut %v", len(r.Headers), len(r.Path), r.BodyBytes, r.BodyCut)
	}
	for _, x := range r.Headers {
		if len(x.Value) > maxHeaderValue+len("…") {
			t.Errorf("header %s kept %d bytes", x.Name, len(x.Value))
		}
	}
}

// TestRingAndSummary: the ring keeps the latest records only, newest
// first, and the summary counts paths and identities over them.
func TestRingAndSummary(t *testing.T) {
	g := NewRing(4)
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for i, x := range []struct{ id, path string }{
		{"a", "/old"}, {"a", "/admin"}, {"b", "/admin"}, {"a", "/.env"}, {"a", "/admin"}, {"b", "/wp-login.php"},
	} {
		g.Add(Record{Time: t0.Add(time.Duration(i) * time.Second), Identity: x.id, Method: "GET", Path: x.path})
	}
	latest := g.Latest(10, "")
	if len(latest) != 4 || latest[0].Path != "/wp-login.php" || latest[3].Path != "/admin" {
		t.Errorf("latest = %+v", latest)
	}
	if only := g.Latest(10, "b"); len(only) != 2 || only[0].Identity != "b" {
		t.Errorf("latest of b = %+v", only)
	}
	s := g.Summary()
	if s.Records != 4 || s.Total != 6 || s.Capacity != 4 {
		t.Errorf("summary counts = %d %d %d", s.Records, s.Total, s.Capacity)
	}
	if s.TopPaths[0] != (PathCount{Path: "/admin", Count: 2, Identities: 2}) {
		t.Errorf("top path = %+v", s.TopPaths[0])
	}
	if len(s.Identities) != 2 || s.Identities[0].Identity != "a" || s.Identities[0].Requests != 2 ||
		!s.Identities[0].First.Equal(t0.Add(3*time.Second)) || s.Identities[0].TopPaths[0].Path != "/.env" {
		t.Errorf("identities = %+v", s.Identities)
	}
}

// TestAPI: limits are checked, and the summary is served as JSON.
func TestAPI(t *testing.T) {
	d := newDecoy(t, "")
	d.send(t, "GET", "/admin", map[string]string{"X-Forwarded-For": "203.0.113.7"}, "")
	var s Summary
	getJSON(t, d.api.URL+"/api/v1/summary", &s)
	if len(s.TopPaths) != 1 || s.TopPaths[0].Path != "/admin" || s.Identities[0].Identity != "203.0.113.7" {
		t.Errorf("summary = %+v", s)
	}
	for _, q := range []string{"0", "1001", "x"} {
		resp, err := http.Get(d.api.URL + "/api/v1/records?limit=" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("limit=%s: %s, want 400", q, resp.Status)
		}
	}
}

// FuzzBait: whatever a request holds, the bait answers valid JSON (or
// redirects a path that is not clean, as Go's router does), with and
// without the API's routes and a not-found answer that names the path,
// and the record stays within its bounds and shows no control character.
func FuzzBait(f *testing.F) {
	f.Add("GET", "/users/42", "a=1&b=2", "User-Agent", "curl/8", "203.0.113.7")
	f.Add("POST", "/\x00\u202e/..", "token=x", "Authorization", "Bearer s", "not-an-address")
	f.Add("PATCH", strings.Repeat("/é", 300), strings.Repeat("k=v&", 200), "X-\u200b", "\xff\xfe", "2001:db8::1")
	f.Fuzz(func(t *testing.T, method, path, query, hname, hvalue, xff string) {
		ring := NewRing(4)
		routes, err := ParseRoutes("/users/*,/data")
		if err != nil {
			t.Fatal(err)
		}
		echo := &NotFound{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: `{"method":"{method}","path":"{path}"}` + "\n"}
		for _, b := range []*Bait{NewBait(BaitOptions{Ring: ring}), NewBait(BaitOptions{Ring: ring, Routes: routes, NotFound: echo})} {
			req := &http.Request{
				Method: method, URL: &url.URL{Path: path, RawQuery: query}, Host: "api",
				Header: http.Header{hname: {hvalue}, "X-Forwarded-For": {xff}}, Body: http.NoBody,
			}
			w := httptest.NewRecorder()
			b.ServeHTTP(w, req)
			if redirect := w.Code/100 == 3 && w.Header().Get("Location") != ""; !redirect && !json.Valid(w.Body.Bytes()) {
				t.Fatalf("answer is not JSON: %d %q", w.Code, w.Body)
			}
		}
		r := ring.Latest(1, "")[0]
		raw, _ := json.Marshal(r)
		if len(r.Headers) > maxHeaders || len(r.Path) > maxPath+len("…")+16 || len(r.Query) > maxQuery+200 || len(raw) > 16<<10 {
			t.Fatalf("record out of bounds: %d bytes: %s", len(raw), raw)
		}
		for _, s := range []string{r.Method, r.Path, r.Query, r.Identity} {
			if strings.ContainsFunc(s, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
				t.Fatalf("record shows a control character: %q", s)
			}
		}
	})
}
