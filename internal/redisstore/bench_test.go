package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/redisstore/redistest"
)

// commands returns how many commands clients have sent srv, from INFO
// commandstats: EVALSHA and EVAL and every other command, but not the
// commands a script runs (commandstats counts those too, under their own
// names) nor the INFO calls that measure.
func commands(b *testing.B, srv *redistest.Server) (clientCmds, scriptCmds int64) {
	b.Helper()
	for k, v := range srv.Info("commandstats") {
		if !strings.HasPrefix(k, "cmdstat_") || k == "cmdstat_info" {
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
		c, _ := strconv.ParseInt(calls, 10, 64)
		switch k {
		case "cmdstat_evalsha", "cmdstat_eval", "cmdstat_ping", "cmdstat_hello", "cmdstat_client|setinfo", "cmdstat_client|setname":
			clientCmds += c
		default: // the merge script's ZADD, ZCARD, ZREMRANGEBYRANK, PEXPIRE, ZRANGEBYSCORE
			scriptCmds += c
		}
	}
	return clientCmds, scriptCmds
}

// BenchmarkMerge sends batches of 256 identities with 4 request times
// each, as a replica's shipper would under load, to one redis-server over
// loopback. It reports Redis commands per observation (one identity in
// one batch) and per request time.
func BenchmarkMerge(b *testing.B) {
	srv := redistest.Start(b)
	s := open(b, Options{Addrs: []string{srv.Addr}})
	const ids, perID = 256, 4
	names := make([]string, ids)
	for i := range names {
		names[i] = fmt.Sprint("198.51.100.", i)
	}
	batch := make([]Observation, ids)
	ctx := context.Background()
	var round int64
	// One warm-up round loads the script (NOSCRIPT, then EVAL).
	warm := []Observation{{ID: names[0], Times: []int64{us(-1, 0)}}}
	if _, err := s.Merge(ctx, warm); err != nil {
		b.Fatal(err)
	}
	before, _ := commands(b, srv)
	b.ReportAllocs()
	for b.Loop() {
		for i := range batch {
			times := make([]int64, perID)
			for j := range times {
				times[j] = us(round, int64(i*perID+j))
			}
			batch[i] = Observation{ID: names[i], After: us(round-1, 0), Times: times}
		}
		round++
		if _, err := s.Merge(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	after, _ := commands(b, srv)
	cmds := float64(after - before)
	b.ReportMetric(cmds/float64(b.N*ids), "cmds/identity")
	b.ReportMetric(cmds/float64(b.N*ids*perID), "cmds/request")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*ids*perID), "ns/request")
}

// BenchmarkMemoryPerIdentity fills Redis with 100,000 identities, each
// with a full ring of 64 request times, and reports used_memory per
// identity. Run it once: -bench MemoryPerIdentity -benchtime 1x.
func BenchmarkMemoryPerIdentity(b *testing.B) {
	srv := redistest.Start(b)
	s := open(b, Options{Addrs: []string{srv.Addr}})
	const ids, batchSize = 100_000, 256
	ring := DefaultRingSize
	ctx := context.Background()
	for b.Loop() {
		if _, err := srv.CLI("FLUSHALL"); err != nil {
			b.Fatal(err)
		}
		before := usedMemory(b, srv)
		batch := make([]Observation, 0, batchSize)
		for i := range ids {
			times := make([]int64, ring)
			for j := range times {
				times[j] = us(int64(j), int64(i))
			}
			batch = append(batch, Observation{ID: fmt.Sprint("id-", i), Times: times})
			if len(batch) == batchSize || i == ids-1 {
				if _, err := s.Merge(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		after := usedMemory(b, srv)
		b.ReportMetric(float64(after-before)/ids, "bytes/identity")
	}
}

func usedMemory(b *testing.B, srv *redistest.Server) int64 {
	b.Helper()
	n, err := strconv.ParseInt(srv.Info("memory")["used_memory"], 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkMemoryPerQuarantineEntry puts 100,000 quarantines and reports
// used_memory per entry (its hash and its index member). Run it once:
// -bench MemoryPerQuarantineEntry -benchtime 1x.
func BenchmarkMemoryPerQuarantineEntry(b *testing.B) {
	srv := redistest.Start(b)
	s := open(b, Options{Addrs: []string{srv.Addr}})
	const entries, workers = 100_000, 16
	ctx := context.Background()
	for b.Loop() {
		if _, err := srv.CLI("FLUSHALL"); err != nil {
			b.Fatal(err)
		}
		before := usedMemory(b, srv)
		now := time.Now()
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := w; i < entries; i += workers {
					e := Entry{ID: fmt.Sprint("203.0.", i/256, ".", i%256), Since: now, Until: now.Add(time.Hour),
						Strikes: 1, Reason: "metronome", Score: 97}
					if _, err := s.Put(ctx, e); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		after := usedMemory(b, srv)
		b.ReportMetric(float64(after-before)/entries, "bytes/entry")
	}
}
