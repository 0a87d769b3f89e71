package dashboard

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// apiKey is a customer's credential used as an identity.
const apiKey = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"

func TestHostHeader(t *testing.T) {
	h, _ := newTest(t, nil)
	for _, host := range []string{"localhost:8080", "localhost", "LOCALHOST.:8080", "127.0.0.1:8080", "[::1]:8080", "10.1.2.3", "[2001:db8::1]"} {
		if rec := do(t, h, "GET", "/api/v1/identities", "", "Host", host); rec.Code != http.StatusOK {
			t.Errorf("Host %q: %d, want 200", host, rec.Code)
		}
	}
	for _, host := range []string{"rebind.attacker.example", "rebind.attacker.example:8080", "localhost.attacker.example", "127.0.0.1.nip.io", ""} {
		for _, path := range []string{"/", "/api/v1/identities", "/api/v1/stream", "/api/v1/config"} {
			rec := do(t, h, "GET", path, "", "Host", host)
			msg := errorBody(t, rec, http.StatusMisdirectedRequest)
			if !strings.Contains(msg, "--http-allowed-hosts") {
				t.Errorf("Host %q %s: message %q does not name --http-allowed-hosts", host, path, msg)
			}
		}
		for _, path := range []string{"/healthz", "/readyz"} {
			if rec := do(t, h, "GET", path, "", "Host", host); rec.Code != http.StatusOK {
				t.Errorf("probe %s with Host %q: %d, want 200", path, host, rec.Code)
			}
		}
	}

	h, _ = newTest(t, func(o *Options) { o.AllowedHosts = []string{"flowlock.example.com", "*.corp.example"} })
	for host, want := range map[string]int{
		"flowlock.example.com:443": 200, "a.corp.example": 200, "b.a.corp.example": 200,
		"corp.example": 421, "localhost": 421, "x.flowlock.example.com": 421, "203.0.113.1": 200,
	} {
		if rec := do(t, h, "GET", "/api/v1/quarantine", "", "Host", host); rec.Code != want {
			t.Errorf("allowed list: Host %q = %d, want %d", host, rec.Code, want)
		}
	}
	h, _ = newTest(t, func(o *Options) { o.AllowedHosts = []string{"*"} })
	if rec := do(t, h, "GET", "/", "", "Host", "anything.example"); rec.Code != http.StatusOK {
		t.Errorf(`"*": Host anything.example = %d, want 200`, rec.Code)
	}
}

// maskedBackend holds a name identity that is a credential.
func maskedTest(t *testing.T, show bool) (*server, *fakeBackend, *bytes.Buffer) {
	t.Helper()
	_, fb := newTest(t, nil)
	fb.identities = append(fb.identities, Identity{Identity: apiKey, Score: 95, Requests: 50, FirstSeen: testNow, LastSeen: testNow, Quarantined: true})
	fb.quarantine = append(fb.quarantine, Quarantine{Identity: apiKey, Reason: "periodic", Score: 95, Strikes: 1, Since: testNow, Until: testNow.Add(time.Hour), RetryAfter: 3600})
	fb.events = append(fb.events, Decision{Time: testNow, Identity: apiKey, Action: actionAdmitted, Reason: "periodic", Score: 95, By: "detector"})
	var logs bytes.Buffer
	s := newServer(Options{
		Backend: fb, AdminToken: testToken, Now: func() time.Time { return testNow }, NameIdentities: true,
		ShowIdentities: show, Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	return s, fb, &logs
}

func TestMaskedIdentities(t *testing.T) {
	s, fb, logs := maskedTest(t, false)
	h := s.handler()
	id, _ := identity.FromName(apiKey)
	mask := id.Masked()

	var bodies []string
	for _, path := range []string{"/api/v1/identities", "/api/v1/quarantine"} {
		rec := do(t, h, "GET", path, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d", path, rec.Code)
		}
		bodies = append(bodies, rec.Body.String())
		if !strings.Contains(rec.Body.String(), mask) {
			t.Errorf("GET %s does not show the mask %s: %s", path, mask, rec.Body)
		}
	}
	snap := string(s.snapshotEvent(1))
	bodies = append(bodies, snap)
	if !strings.Contains(snap, mask) {
		t.Errorf("stream snapshot does not show the mask: %s", snap)
	}

	// What the page shows, its buttons send back.
	esc := url.PathEscape(mask)
	rec := do(t, h, "GET", "/api/v1/identities/"+esc, "")
	if rec.Code != http.StatusOK {
		t.Fatalf("explain by mask = %d %s", rec.Code, rec.Body)
	}
	bodies = append(bodies, rec.Body.String())
	var x explainResponse
	if err := json.Unmarshal(rec.Body.Bytes(), &x); err != nil || x.Identity != mask || x.Quarantine == nil || x.Quarantine.Identity != mask || len(x.Decisions) == 0 || x.Decisions[0].Identity != mask {
		t.Errorf("explain by mask = %+v, %v; want it all under the mask", x, err)
	}
	rec = doAdmin(t, h, "POST", "/api/v1/quarantine/"+esc+"/extend", `{"by":"10m"}`)
	if rec.Code != http.StatusOK || len(fb.extends) != 1 || fb.extends[0].id != id {
		t.Fatalf("extend by mask = %d %s, extends %v", rec.Code, rec.Body, fb.extends)
	}
	bodies = append(bodies, rec.Body.String())
	rec = doAdmin(t, h, "DELETE", "/api/v1/quarantine/"+esc, "")
	if rec.Code != http.StatusOK || len(fb.releases) != 1 || fb.releases[0] != id {
		t.Fatalf("release by mask = %d %s, releases %v", rec.Code, rec.Body, fb.releases)
	}
	bodies = append(bodies, rec.Body.String())
	rec = doAdmin(t, h, "POST", "/api/v1/quarantine", `{"identity":"`+mask+`","ttl":"1h"}`)
	if rec.Code != http.StatusOK || len(fb.bans) != 1 || fb.bans[0].id != id {
		t.Fatalf("ban by mask = %d %s, bans %v", rec.Code, rec.Body, fb.bans)
	}
	bodies = append(bodies, rec.Body.String())

	// The value itself still works for an operator who knows it.
	if rec := do(t, h, "GET", "/api/v1/identities/"+apiKey, ""); rec.Code != http.StatusOK {
		t.Errorf("explain by value = %d", rec.Code)
	}

	// A mask nobody listed is refused, not taken as a header value.
	other := "key:0123456789ab"
	if rec := doAdmin(t, h, "DELETE", "/api/v1/quarantine/"+other, ""); rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "not one this dashboard listed") {
		t.Errorf("release of an unknown mask = %d %s, want 400", rec.Code, rec.Body)
	}
	if rec := doAdmin(t, h, "POST", "/api/v1/quarantine", `{"identity":"`+other+`"}`); rec.Code != http.StatusBadRequest {
		t.Errorf("ban of an unknown mask = %d %s, want 400", rec.Code, rec.Body)
	}
	if rec := do(t, h, "GET", "/api/v1/identities/"+other, ""); rec.Code != http.StatusNotFound {
		t.Errorf("explain of an unknown mask = %d, want 404", rec.Code)
	}

	bodies = append(bodies, logs.String())
	for i, b := range bodies {
		if strings.Contains(b, apiKey) || strings.Contains(b, apiKey[:12]) {
			t.Errorf("response or log %d shows the key in clear: %s", i, b)
		}
	}
	if !strings.Contains(logs.String(), mask) {
		t.Errorf("the log does not name the identity by its mask: %s", logs)
	}
	if !strings.Contains(bodies[0], `"203.0.113.7"`) {
		t.Errorf("addresses must stay visible: %s", bodies[0])
	}
}

func TestShowIdentities(t *testing.T) {
	s, fb, _ := maskedTest(t, true)
	odd := "nb\u00a0space-in-a-key"
	fb.quarantine = append(fb.quarantine, Quarantine{Identity: odd, Since: testNow, Until: testNow.Add(time.Hour)})
	h := s.handler()
	rec := do(t, h, "GET", "/api/v1/quarantine", "")
	if !strings.Contains(rec.Body.String(), apiKey) {
		t.Errorf("--show-identities: the value is not shown: %s", rec.Body)
	}
	shown := `nb\u{00A0}space-in-a-key`
	if !strings.Contains(rec.Body.String(), strings.ReplaceAll(shown, `\`, `\\`)) {
		t.Errorf("a no-break space is not shown visibly: %s", rec.Body)
	}
	rec = doAdmin(t, h, "DELETE", "/api/v1/quarantine/"+url.PathEscape(shown), "")
	// Such a name is refused from a header now, but one restored from an
	// older state file still stands, and must still be released.
	var oddID identity.ID
	if err := oddID.UnmarshalText([]byte(odd)); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || len(fb.releases) != 1 || fb.releases[0] != oddID {
		t.Errorf("release by the shown text = %d %s, releases %v", rec.Code, rec.Body, fb.releases)
	}
}

func TestBadTokenLogThrottled(t *testing.T) {
	var logs bytes.Buffer
	rejected := 0
	h, _ := newTest(t, func(o *Options) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		o.BadToken = func() { rejected++ }
	})
	for range 300 {
		do(t, h, "DELETE", "/api/v1/quarantine/203.0.113.7", "", "Authorization", "Bearer wrong-token-guess-000000")
	}
	if n := strings.Count(logs.String(), "admin request rejected"); n != 1 {
		t.Errorf("300 bad tokens in a minute gave %d WARN lines, want 1", n)
	}
	if rejected != 300 {
		t.Errorf("BadToken called %d times, want 300", rejected)
	}

	var l logThrottle
	t0 := testNow
	if n, ok := l.allow(t0); !ok || n != 1 {
		t.Errorf("first line: %d, %v", n, ok)
	}
	for i := range 9 {
		if _, ok := l.allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Errorf("line %d within the minute let through", i)
		}
	}
	if n, ok := l.allow(t0.Add(time.Minute)); !ok || n != 10 {
		t.Errorf("line after a minute: %d, %v; want 10, true", n, ok)
	}
}

func TestAdminStreamReserve(t *testing.T) {
	_, fb := newTest(t, nil)
	h, _ := hubOf(t, fb, func(o *Options) { o.MaxStreams = 1; o.AdminStreams = 1 })
	_, base := streamServer(t, h)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func(token string) *http.Response {
		req, _ := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/stream", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = resp.Body.Close() })
		return resp
	}
	if resp := open(""); resp.StatusCode != http.StatusOK {
		t.Fatalf("first anonymous stream = %d", resp.StatusCode)
	}
	if resp := open(""); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("anonymous stream over the cap = %d, want 503", resp.StatusCode)
	}
	if resp := open("wrong-token-0000000000000"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("stream with a wrong token over the cap = %d, want 503", resp.StatusCode)
	}
	if resp := open(testToken); resp.StatusCode != http.StatusOK {
		t.Errorf("admin stream with anonymous places full = %d, want 200", resp.StatusCode)
	}
}
