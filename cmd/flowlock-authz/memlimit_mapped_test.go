package main

import (
	"bufio"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flowlock/flowlock/internal/calibrate"
	"github.com/flowlock/flowlock/internal/config"
	"github.com/flowlock/flowlock/internal/wire"
)

// anonMapped returns the bytes of private anonymous read-write mappings
// of this process that the Go runtime does not count (its
// /memory/classes/total:bytes, which leaves out syscall.Mmap's): what
// internal/offheap maps.
func anonMapped(t *testing.T) int64 {
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	total := -int64(s[0].Value.Uint64())
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 5 || fs[1] != "rw-p" || fs[4] != "0" {
			continue // a file, the stack, the heap's brk, ...
		}
		lo, hi, _ := strings.Cut(fs[0], "-")
		a, _ := strconv.ParseUint(lo, 16, 64)
		b, _ := strconv.ParseUint(hi, 16, 64)
		total += int64(b - a)
	}
	return total
}

// TestMappedFixedCountsTheTables: what serve builds maps, outside the Go
// heap, the fixed tables mappedFixed names (fleet tracks, calibration's
// recorder, the crowd count), so setMemoryLimit takes them off the
// container's share with the engine's table; a table added or resized
// without it is caught here (a review found the fleet tracks and the
// recorder missing, 6.7 MB).
func TestMappedFixedCountsTheTables(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc/self/maps, which only Linux has")
	}
	cfg := config.Default()
	counted := mappedFixed(cfg)
	// Earlier tests' tables are unmapped by cleanups after a collection,
	// which may land between the two reads: collect first, and try again
	// when the difference is off.
	var mapped int64
	for range 3 {
		runtime.GC()
		time.Sleep(50 * time.Millisecond) // let pending cleanups unmap
		before := anonMapped(t)
		calib := calibrate.NewRecorder(0, time.Now()) // as serve does
		stack := wire.Build(cfg, wire.Extra{})        // fleet detection on by default
		mapped = anonMapped(t) - before
		runtime.KeepAlive(calib)
		runtime.KeepAlive(stack)
		if d := mapped - counted; d <= 1<<20 && d >= -(1<<20) {
			break
		}
	}
	t.Logf("mapped outside the Go heap by the recorder and the stack: %.1f MB; mappedFixed: %.1f MB", float64(mapped)/1e6, float64(counted)/1e6)
	if d := mapped - counted; d > 1<<20 || d < -(1<<20) {
		t.Errorf("%.1f MB mapped outside the Go heap, %.1f MB counted by mappedFixed", float64(mapped)/1e6, float64(counted)/1e6)
	}
}
