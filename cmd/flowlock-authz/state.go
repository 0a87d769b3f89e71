package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/flowlock/flowlock/internal/metrics"
	"github.com/flowlock/flowlock/internal/quarantine"
)

// persister writes the quarantine to --state-file after it changes. Bursts
// of admissions are coalesced into one write per interval; manual bans and
// releases are written at once (Flush), so an operator's action survives
// even a crash right after it.
type persister struct {
	path  string
	list  *quarantine.List
	every time.Duration
	m     *metrics.Metrics
	log   *slog.Logger

	mu sync.Mutex // serialises writes of the file
}

// Run writes the state after each change until ctx is done. A failed write
// is retried every few seconds until one succeeds, changes or not. The
// final write is the caller's, after the servers stop.
func (p *persister) Run(ctx context.Context) error {
	const retry = 5 * time.Second
	var pending <-chan time.Time // a failed write waiting to be retried
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.list.Changed():
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(p.every): // let a burst of changes land in one write
			}
		case <-pending:
		}
		pending = nil
		if err := p.Flush(); err != nil { // counted and logged by Flush
			pending = time.After(retry)
		}
	}
}

// Flush writes the current state now.
func (p *persister) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	err := quarantine.SaveFile(p.path, p.list, now)
	p.m.StateWrite(err, now)
	if err != nil {
		p.log.Error("quarantine state not saved; it is kept in memory and the write is retried",
			"state_file", p.path, "err", err)
	}
	return err
}

// restoreState loads --state-file into q at startup (quarantine.LoadFile:
// regular files only, bounded by the List's cap, stopped by ctx, the
// shutdown signal) after removing the temporary files that a kill during a
// write left next to it. Those are counted in the log, never listed one by
// one: each is up to the size of the state file, one per kill.
func restoreState(ctx context.Context, path string, q *quarantine.List, log *slog.Logger) (int, error) {
	removed, err := quarantine.RemoveTemps(path)
	if len(removed) > 0 {
		log.Info("removed temporary state files left by an interrupted write", "state_file", path, "removed", len(removed))
	}
	if err != nil {
		// Not fatal: the load and the first write say whether the
		// directory is usable.
		log.Warn("could not remove temporary state files", "state_file", path, "err", err)
	}
	n, err := quarantine.LoadFile(ctx, path, q, time.Now())
	if err != nil {
		return 0, fmt.Errorf("--state-file: %w", err)
	}
	return n, nil
}

// logRegrouped reports, in one line, what Regroup did to a state file
// written under another --ipv6-prefix: counts and prefix lengths only, never
// identities, however many entries moved. Nothing is logged when nothing
// moved. Ranges get a warning, since they are the one case where a
// quarantine now covers more than one client group.
func logRegrouped(log *slog.Logger, g quarantine.Regrouped) {
	if !g.Changed() {
		return
	}
	from := make([]string, len(g.From))
	for i, b := range g.From {
		from[i] = fmt.Sprintf("/%d", b)
	}
	args := []any{
		"ipv6_prefix", fmt.Sprintf("/%d", g.Prefix), "from_prefixes", strings.Join(from, ","),
		"regrouped", g.Coarsened, "merged", g.Merged, "kept_as_ranges", g.Ranges,
	}
	if g.Ranges == 0 {
		log.Info("quarantine regrouped for the new --ipv6-prefix", args...)
		return
	}
	log.Warn("quarantine regrouped for the new --ipv6-prefix; entries from a shorter prefix cannot be split, "+
		"so each still denies every client inside it until it ends (release one by naming any address inside it)", args...)
}
