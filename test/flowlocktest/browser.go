package flowlocktest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Chromium returns the path of Debian's Chromium (or $FLOWLOCK_CHROMIUM).
// Without it the test is skipped, saying why, except under CI, where it
// fails: CI installs Chromium and must not skip a browser check. -short
// skips it too.
func Chromium(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test: skipped with -short")
	}
	path := os.Getenv("FLOWLOCK_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if _, err := os.Stat(path); err != nil {
		msg := fmt.Sprintf("browser test needs Chromium at %s (apt-get install -y chromium, or set FLOWLOCK_CHROMIUM): %v", path, err)
		if os.Getenv("CI") != "" {
			t.Fatal(msg + "; CI must install it and must not skip this test")
		}
		t.Skip(msg)
	}
	return path
}

// Browser starts a headless Chromium at execPath with the flags CI uses
// (no sandbox, GPU, QUIC or background networking, which this machine's
// closed network would refuse) and a fresh profile, 1600×1000, and returns
// a tab context bounded by timeout. Everything stops when t ends.
func Browser(t *testing.T, execPath string, timeout time.Duration) context.Context {
	t.Helper()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(execPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1600, 1000),
		chromedp.ModifyCmdFunc(limitBrowser),
	)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })
	return ctx
}

// limitBrowser runs Chromium under prlimit with DefaultLimits' file
// descriptor cap, and keeps chromedp's own default: the browser dies with
// the test process. The address space is not capped: Chromium reserves
// terabytes of it up front (V8's cage) and would not start; its time is
// bounded by Browser's timeout.
func limitBrowser(cmd *exec.Cmd) {
	name, argv := limitedArgs(Limits{OpenFiles: DefaultLimits.OpenFiles}, cmd.Path, cmd.Args[1:])
	if p, err := exec.LookPath(name); err == nil {
		cmd.Path, cmd.Args = p, append([]string{name}, argv...)
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = new(syscall.SysProcAttr)
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
