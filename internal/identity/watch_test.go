package identity

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestWatch(t *testing.T) {
	const (
		noXFF    = 1
		noHeader = 2
	)
	var buf bytes.Buffer
	w := NewWatch(WatchOptions{
		Logger: slog.New(slog.NewTextHandler(&buf, nil)),
		Window: time.Minute,
		Names:  []string{"none", "no_xff", "no_header"},
		Explain: func(c uint8, peer netip.Addr) (string, string) {
			return "problem " + string(rune('0'+c)) + " from " + peer.String(), "fix it"
		},
		Every: func(c uint8) bool { return c == noHeader },
	})
	proxy := netip.MustParseAddr("127.0.0.1")
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	feed := func(from time.Time, n int, cause uint8) {
		for i := range n {
			w.Record(cause, proxy, from.Add(time.Duration(i)*time.Millisecond))
		}
	}
	warnings := func() int { return strings.Count(buf.String(), "level=WARN") }

	feed(t0, 100, 0)
	feed(t0.Add(time.Second), WatchMinChecks-1, noXFF)
	if warnings() != 0 || len(w.Findings(t0.Add(2*time.Second))) != 0 {
		t.Fatalf("%d Checks with a cause reported: %s", WatchMinChecks-1, buf.String())
	}
	feed(t0.Add(2*time.Second), 1000, noXFF) // reaches the bound: one line for the window
	if n := warnings(); n != 1 {
		t.Fatalf("after %d Checks with a cause: %d warnings, want 1:\n%s", WatchMinChecks+999, n, buf.String())
	}
	for _, want := range []string{`msg="problem 1 from 127.0.0.1"`, "cause=no_xff", "peer=127.0.0.1", `fix="fix it"`, "checks=" + strconv.Itoa(WatchMinChecks)} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("warning lacks %s: %s", want, buf.String())
		}
	}
	fs := w.Findings(t0.Add(3 * time.Second))
	if want := uint64(WatchMinChecks - 1 + 1000); len(fs) != 1 || fs[0].Cause != "no_xff" || fs[0].Count != want || fs[0].Peer != proxy || fs[0].Fix != "fix it" {
		t.Errorf("findings = %+v, want no_xff with %d Checks", fs, want)
	}

	feed(t0.Add(61*time.Second), 100, noXFF) // the next window reports again
	if n := warnings(); n != 2 {
		t.Errorf("a new window with the cause: %d warnings in all, want 2", n)
	}
	if fs := w.Findings(t0.Add(62*time.Second + 2*time.Minute)); len(fs) != 0 {
		t.Errorf("findings two windows after the last such Check: %+v, want none", fs)
	}

	// A cause that counts only when every Check has it.
	buf.Reset()
	feed(t0.Add(10*time.Minute), 1, 0)
	feed(t0.Add(10*time.Minute+time.Second), 100, noHeader)
	if warnings() != 0 {
		t.Errorf("a header missing from some Checks reported: %s", buf.String())
	}
	feed(t0.Add(12*time.Minute), 100, noHeader)
	if warnings() != 1 || !strings.Contains(buf.String(), "cause=no_header") {
		t.Errorf("a header missing from every Check: %s", buf.String())
	}

	feed(t0.Add(20*time.Minute), 2*WatchMinChecks, noXFF) // reported: what follows is the common path
	if n := testing.AllocsPerRun(100, func() { w.Record(noXFF, proxy, t0.Add(20*time.Minute+time.Second)) }); n != 0 {
		t.Errorf("Record allocates %v times, want 0", n)
	}
	var none *Watch
	none.Record(noXFF, proxy, t0)
	if none.Findings(t0) != nil {
		t.Error("a nil Watch has findings")
	}
}

// TestWatchReportsASlowTrickle: a person refreshing by hand behind a
// misconfigured proxy sends a request every few seconds, never many within
// one window; the cause is still reported, once the Checks add up.
func TestWatchReportsASlowTrickle(t *testing.T) {
	var buf bytes.Buffer
	w := NewWatch(WatchOptions{Logger: slog.New(slog.NewTextHandler(&buf, nil)), Window: time.Minute, Names: []string{"none", "no_xff"}})
	proxy := netip.MustParseAddr("127.0.0.1")
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for i := range 10 { // one Check every 40 s: at most 2 a window
		w.Record(1, proxy, t0.Add(time.Duration(i)*40*time.Second))
	}
	if !strings.Contains(buf.String(), "cause=no_xff") || len(w.Findings(t0.Add(7*time.Minute))) != 1 {
		t.Errorf("a slow trickle of unscored Checks was never reported: %q", buf.String())
	}
}

// BenchmarkWatchRecord is the Watch's cost on every Check, from all cores
// at once, with and without a cause judged against every Check (only
// then does each Check write a shared counter).
func BenchmarkWatchRecord(b *testing.B) {
	peer := netip.MustParseAddr("127.0.0.1")
	for _, every := range []bool{false, true} {
		b.Run(fmt.Sprintf("every=%v", every), func(b *testing.B) {
			o := WatchOptions{Logger: slog.New(slog.DiscardHandler)}
			if every {
				o.Every = func(c uint8) bool { return c == 7 }
			}
			w := NewWatch(o)
			now := time.Now()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w.Record(0, peer, now)
				}
			})
		})
	}
}
