package identity

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestWatch(t *testing.T) {
	var buf bytes.Buffer
	w := NewWatch(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute)
	t0 := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	feed := func(from time.Time, n, missing int) {
		for i := range n {
			w.Record(i < missing, from.Add(time.Duration(i)*time.Millisecond))
		}
	}

	feed(t0, 100, 90)                     // window 1: 90 % without identity
	feed(t0.Add(61*time.Second), 100, 10) // judges window 1: one warning
	if n := strings.Count(buf.String(), "no client identity"); n != 1 {
		t.Fatalf("after a window of 90%% without identity: %d warnings, want 1:\n%s", n, buf.String())
	}
	if !strings.Contains(buf.String(), "no_identity=90") {
		t.Errorf("warning does not count the Checks: %s", buf.String())
	}
	buf.Reset()
	feed(t0.Add(122*time.Second), 100, 100) // judges window 2 (about 10 %): quiet
	if buf.Len() != 0 {
		t.Errorf("a window of 10%% without identity warned: %s", buf.String())
	}
	feed(t0.Add(123*time.Second), 1000, 1000) // same window: no warning until it ends
	if buf.Len() != 0 {
		t.Errorf("warned inside a window: %s", buf.String())
	}
	feed(t0.Add(190*time.Second), 1, 0)
	if n := strings.Count(buf.String(), "no client identity"); n != 1 {
		t.Errorf("after the window ended: %d warnings, want 1", n)
	}

	buf.Reset()
	quiet := NewWatch(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute)
	for i := range 5 { // too few Checks to judge
		quiet.Record(true, t0.Add(time.Duration(i)*time.Minute))
	}
	if buf.Len() != 0 {
		t.Errorf("a few Checks without identity warned: %s", buf.String())
	}

	if n := testing.AllocsPerRun(100, func() { w.Record(true, t0.Add(200*time.Second)) }); n != 0 {
		t.Errorf("Record allocates %v times, want 0", n)
	}
}
