package browser

import (
	"net/http"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/flowlock/flowlock/test/flowlocktest"
)

// TestHoneypotPanel: with --honeypot-url, the page shows what the real
// decoy recorded ("what the quarantined clients went for"): the paths and
// the client, a hostile path as text; without it the panel stays hidden.
func TestHoneypotPanel(t *testing.T) {
	execPath := flowlocktest.Chromium(t)
	bait, api := flowlocktest.FreeAddr(t), flowlocktest.FreeAddr(t)
	decoy := flowlocktest.StartProcess(t, flowlocktest.LimitedCommand(flowlocktest.DefaultLimits,
		flowlocktest.Bin("flowlock-honeypot"), "--addr", bait, "--api-addr", api))
	const hostile = `/<img/src=x/onerror=alert(1)>`
	for i, path := range []string{"/admin", "/admin", "/.env", hostile} {
		req, err := http.NewRequest("GET", "http://"+bait+"/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = path // sent as it is, not escaped
		req.Header.Set("X-Forwarded-For", "203.0.113.9")
		var resp *http.Response
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if resp, err = flowlocktest.HTTPClient.Do(req); err == nil || time.Now().After(deadline) || decoy.Exited() {
				break
			}
		}
		if err != nil {
			t.Fatalf("bait request %d: %v", i, err)
		}
		resp.Body.Close()
	}

	with := start(t, "--honeypot-url", "http://"+api)
	without := start(t)
	ctx := flowlocktest.Browser(t, execPath, 2*time.Minute)
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{
		Source: `window.__csp = []; document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(e.violatedDirective));`,
	}); err != nil {
		t.Fatal(err)
	}

	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+with.HTTPAddr+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "honeypot panel shown", `!document.querySelector('[data-testid=honeypot-panel]').hidden`, 20*time.Second)
	waitFor(t, ctx, "the bot's paths and address listed",
		`(() => { const t = document.querySelector('[data-testid=honeypot-panel]').textContent;
		  return t.includes('/admin') && t.includes('/.env') && t.includes('203.0.113.9') && t.includes(`+js(hostile)+`); })()`, 20*time.Second)
	if imgs := eval[int](t, ctx, `document.querySelectorAll('[data-testid=honeypot-panel] img').length`); imgs != 0 {
		t.Errorf("a recorded path became markup: %d img elements in the panel", imgs)
	}
	if csp := eval[[]string](t, ctx, `window.__csp`); len(csp) != 0 {
		t.Errorf("CSP violations in the page: %v", csp)
	}

	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+without.HTTPAddr+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "page up", `document.readyState === 'complete'`, 20*time.Second)
	time.Sleep(time.Second) // the panel's first fetch
	if shown := eval[bool](t, ctx, `!document.querySelector('[data-testid=honeypot-panel]').hidden`); shown {
		t.Error("honeypot panel shown without --honeypot-url")
	}
}
