package main

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/quarantine"
)

// TestPersisterRetriesFailedWrites: a state write that fails (a full disk,
// a missing directory) is retried by itself, not only on the next change.
func TestPersisterRetriesFailedWrites(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "later")
		q := quarantine.New(quarantine.Options{})
		p := &persister{path: filepath.Join(dir, "q.json"), list: q, every: time.Second,
			m: newMetrics(nil), log: slog.New(slog.DiscardHandler)}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- p.Run(ctx) }()

		q.Ban(identity.FromAddr(netip.MustParseAddr("203.0.113.9"), 64), time.Now(), time.Hour, "manual")
		time.Sleep(2 * time.Second) // the write after the change fails: no directory yet
		synctest.Wait()
		if _, err := os.Stat(p.path); err == nil {
			t.Fatal("state written into a directory that does not exist")
		}
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		time.Sleep(6 * time.Second) // no further change: only the retry can write it
		synctest.Wait()
		if _, err := os.Stat(p.path); err != nil {
			t.Errorf("failed write not retried: %v", err)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
