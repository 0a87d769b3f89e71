// Package browser drives the built flowlock-authz's command center in a real
// Chromium, black-box: the binary runs with --demo on free loopback ports,
// the page is opened by chromedp, and every claim is checked through the
// page, the admin API or the gRPC Check API, as an operator would see it.
//
// It needs Debian's Chromium (apt-get install -y chromium) at
// /usr/bin/chromium, or FLOWLOCK_CHROMIUM. Without it the test skips with a
// message, except under CI=true, where a missing browser fails: CI must not
// skip it. -short skips it too.
package browser

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

const (
	adminToken     = "browser-test-admin-token-0123456789"
	identityHeader = "x-api-key"
	hostile        = `<img src=x onerror=alert(1)>`
	artifactDir    = "../artifacts" // test/artifacts, gitignored
)

func TestMain(m *testing.M) { os.Exit(flowlocktest.Main(m, "flowlock-authz", "flowlock-honeypot")) }

// start runs the flowlock-authz built by TestMain on free loopback ports
// (see flowlocktest.Start).
func start(t *testing.T, args ...string) *flowlocktest.Service {
	t.Helper()
	return flowlocktest.Start(t, flowlocktest.Bin("flowlock-authz"), args...)
}

// quarantined lists the identities in quarantine, from the admin API.
func quarantined(t *testing.T, s *flowlocktest.Service) []string {
	t.Helper()
	_, list := s.API(t, "GET", "/api/v1/quarantine", "", "")
	var body struct{ Quarantine []struct{ Identity string } }
	if err := json.NewDecoder(strings.NewReader(list)).Decode(&body); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, q := range body.Quarantine {
		ids = append(ids, q.Identity)
	}
	return ids
}

// check sends one Check from source address addr, with the identity header
// if id is not empty, and reports whether it was allowed.
func check(t *testing.T, client authv3.AuthorizationClient, addr, id string) bool {
	t.Helper()
	headers := map[string]string{":method": "GET", ":path": "/api/items", "user-agent": "browser-test"}
	if id != "" {
		headers[identityHeader] = id
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Path: "/api/items", Headers: headers,
		}},
	}})
	if err != nil {
		t.Fatalf("Check from %s: %v", addr, err)
	}
	return codes.Code(resp.GetStatus().GetCode()) == codes.OK
}

// eval runs a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a boolean JavaScript expression until it holds.
func waitFor(t *testing.T, ctx context.Context, what, expr string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v (last error %v)", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// js quotes s as a JavaScript string literal.
func js(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestCommandCenter opens the dashboard of a --demo service, waits for the
// demo's bots to be caught, unlocks the controls with the admin token,
// releases one bot from the page and checks that it is allowed again; then
// shows a hostile identity and checks it stays text. The page must log no
// error and no CSP violation throughout.
func TestCommandCenter(t *testing.T) {
	execPath := flowlocktest.Chromium(t)
	svc := start(t, "--demo", "--admin-token", adminToken, "--identity-header", identityHeader, "--show-identities") // hostile identities shown as they are: that is what the test checks
	client := authv3.NewAuthorizationClient(svc.Dial(t))

	ctx := flowlocktest.Browser(t, execPath, 3*time.Minute)

	// Watch the console (errors, exceptions, the browser log with its CSP
	// reports) and JavaScript dialogs from the first byte on.
	var mu sync.Mutex
	var problems []string
	messages := chromedp.Console(ctx)
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException || m.Type == chromedp.ConsoleWarning ||
				m.Source == "security" || strings.Contains(m.Text, "Content Security Policy") {
				mu.Lock()
				problems = append(problems, fmt.Sprintf("console %s [%s] %s:%d %s", m.Type, m.Source, m.URL, m.Line+1, m.Text))
				mu.Unlock()
			}
		}
	}()
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			mu.Lock()
			problems = append(problems, "a JavaScript dialog opened: "+ev.Message)
			mu.Unlock()
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	// Count CSP violations inside the page too; a script injected by the
	// DevTools protocol is not subject to the page's CSP.
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));`,
	}); err != nil {
		t.Fatal(err)
	}

	base := "http://" + svc.HTTPAddr
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1600, 1000), chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "connection status live", `document.querySelector('[data-testid=connection-status]').dataset.state === 'live'`, 20*time.Second)
	waitFor(t, ctx, "checks per second shown", `/^[0-9.,]+$/.test(document.querySelector('[data-testid=stat-checks]').textContent)`, 10*time.Second)
	waitFor(t, ctx, "a risk row", `document.querySelectorAll('[data-testid=risk-row][data-identity]').length > 0`, 20*time.Second)

	// The demo's fastest bots are caught within seconds.
	waitFor(t, ctx, "a quarantine row", `document.querySelectorAll('[data-testid=quarantine-row]').length > 0`, 90*time.Second)
	waitFor(t, ctx, "quarantined figure", `Number(document.querySelector('[data-testid=stat-quarantined]').textContent) > 0`, 5*time.Second)
	waitFor(t, ctx, "denied figure", `Number(document.querySelector('[data-testid=stat-denied]').textContent.replace(/,/g, '')) > 0`, 10*time.Second)
	// A caught bot keeps knocking: its row counts the refused requests.
	waitFor(t, ctx, "a refused count", `[...document.querySelectorAll('[data-testid=quarantine-row] [data-testid=refused-count]')].some((e) => /^[1-9][0-9,]* refused$/.test(e.textContent))`, 30*time.Second)

	// Read-only until the token is given.
	if disabled := eval[bool](t, ctx, `document.querySelector('[data-testid=quarantine-row] [data-testid=release-button]').disabled`); !disabled {
		t.Error("release button enabled before the admin token was given")
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`[data-testid=admin-unlock]`)),
		chromedp.WaitVisible(chromedp.CSS(`[data-testid=admin-token-input]`)),
		chromedp.SendKeys(chromedp.CSS(`[data-testid=admin-token-input]`), adminToken),
		chromedp.Click(chromedp.CSS(`[data-testid=admin-token-submit]`)),
	); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "controls unlocked", `document.getElementById('notice').dataset.state === 'admin'`, 10*time.Second)
	if stored := eval[bool](t, ctx, `sessionStorage.getItem('flowlock.admin-token') === `+js(adminToken)+` && localStorage.length === 0`); !stored {
		t.Error("the admin token is not in session storage only")
	}

	// Release the first bot in quarantine from the page.
	victim := eval[string](t, ctx, `document.querySelector('[data-testid=quarantine-row]').dataset.identity`)
	row := `[data-testid=quarantine-row][data-identity=` + js(victim) + `]`
	waitFor(t, ctx, "release button enabled", `!document.querySelector(`+js(row+` [data-testid=release-button]`)+`).disabled`, 5*time.Second)
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(row+` [data-testid=release-button]`))); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the released row leaves", `document.querySelector(`+js(row)+`) === null`, 10*time.Second)
	for _, id := range quarantined(t, svc) {
		if id == victim {
			t.Fatalf("%s still in /api/v1/quarantine after the release", victim)
		}
	}
	if !check(t, client, victim, "") {
		t.Errorf("released %s: its next Check was denied", victim)
	}
	t.Logf("released %s from the page; its next Check was allowed", victim)

	// A hostile identity, given through --identity-header, then banned
	// through the API so that it is on the page for sure.
	for range 3 {
		check(t, client, "198.51.100.250", hostile)
	}
	body, _ := json.Marshal(map[string]string{"identity": hostile, "ttl": "10m", "reason": `"><svg onload=alert(2)>`})
	req, _ := http.NewRequest("POST", base+"/api/v1/quarantine", strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := flowlocktest.HTTPClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("ban of the hostile identity = %d", resp.StatusCode)
	}
	hostileRow := `[...document.querySelectorAll('[data-testid=quarantine-row]')].find((r) => r.dataset.identity === ` + js(hostile) + `)`
	waitFor(t, ctx, "the hostile identity's row", hostileRow+` !== undefined`, 10*time.Second)
	if text := eval[string](t, ctx, hostileRow+`.querySelector('.ident').textContent`); text != hostile {
		t.Errorf("hostile row text = %q, want the identity as text", text)
	}
	// Open its explain drawer too: the title and the decisions are text.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](hostileRow+`.querySelector('.ident').click()`)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "the drawer shows the hostile identity", `document.getElementById('drawer-title').textContent === `+js(hostile)+
		` && document.querySelectorAll('#drawer-body .decisions li').length > 0`, 10*time.Second)
	injected := eval[int](t, ctx, `document.querySelectorAll('img, svg[onload], [onerror], [onload], script:not([src])').length`)
	if injected != 0 {
		t.Errorf("%d injected elements found in the page", injected)
	}
	// A real click on the close button. While the drawer slides in (0.45 s,
	// longer on a loaded machine) the click can miss the moving button, so
	// click again until the drawer closes, for up to 10 s.
	closed := `!document.getElementById('drawer').classList.contains('open')`
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#drawer-close`))); err != nil {
			t.Fatal(err)
		}
		done := false
		for wait := time.Now().Add(time.Second); time.Now().Before(wait) && !done; time.Sleep(100 * time.Millisecond) {
			done, _ = chromedp.Run(ctx, chromedp.Evaluate[bool](closed))
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the drawer does not close when its close button is clicked")
		}
	}

	// Reduced motion stops the radar sweep.
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-reduced-motion", Value: "reduce"}},
	}); err != nil {
		t.Fatal(err)
	}
	if display := eval[string](t, ctx, `getComputedStyle(document.querySelector('.sweep')).display`); display != "none" {
		t.Errorf("with prefers-reduced-motion the sweep is %q, want none", display)
	}
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}); err != nil {
		t.Fatal(err)
	}

	// Artifact: what the operator saw.
	time.Sleep(1200 * time.Millisecond) // the drawer has slid out
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(artifactDir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(artifactDir, "dashboard.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: test/artifacts/dashboard.png (%d bytes)", len(shot))

	if csp := eval[[]string](t, ctx, `window.__csp`); len(csp) != 0 {
		t.Errorf("CSP violations in the page: %v", csp)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
}

// TestReconnectsAfterRestart stops the service under an open page and
// starts it again on the same address: the page must say it is
// disconnected meanwhile, and be live again by itself.
func TestReconnectsAfterRestart(t *testing.T) {
	execPath := flowlocktest.Chromium(t)
	svc := start(t) // no --demo, no --admin-token: the admin API is off
	ctx := flowlocktest.Browser(t, execPath, 2*time.Minute)
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective));`,
	}); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800), chromedp.Navigate("http://"+svc.HTTPAddr+"/")); err != nil {
		t.Fatal(err)
	}
	live := `document.querySelector('[data-testid=connection-status]').dataset.state === 'live'`
	waitFor(t, ctx, "live", live, 20*time.Second)
	// Without --admin-token the page is read-only and says so.
	waitFor(t, ctx, "read-only notice", `document.getElementById('notice').dataset.state === 'disabled' && document.querySelector('[data-testid=admin-unlock]').disabled`, 5*time.Second)

	svc.Stop()
	waitFor(t, ctx, "disconnected shown", `document.querySelector('[data-testid=connection-status]').dataset.state === 'disconnected'`, 10*time.Second)
	if label := eval[string](t, ctx, `document.querySelector('[data-testid=connection-status]').textContent`); !strings.Contains(label, "Disconnected") {
		t.Errorf("connection status says %q while the service is down", label)
	}

	start(t, "--http-addr", svc.HTTPAddr) // the later flag wins
	waitFor(t, ctx, "live again after the restart", live, 30*time.Second)
	if csp := eval[[]string](t, ctx, `window.__csp`); len(csp) != 0 {
		t.Errorf("CSP violations in the page: %v", csp)
	}
}
