// Package strmemo remembers a string derived from each string seen, in a
// bounded, sharded table safe for concurrent use: the Check path's way to
// turn a repeated request string (a TLS fingerprint, a path, a name) into
// its derived value, or its stable copy, without hashing or allocating
// again.
package strmemo

import (
	"hash/maphash"
	"strings"
	"sync"
)

// Memo maps strings to values derived from them. A full shard starts again
// empty, so a client that sends ever new strings cannot grow it past
// shards × perShard entries. The zero Memo is not usable: use New.
type Memo struct {
	seed     maphash.Seed // random: clients cannot aim at one shard
	mask     uint64       // len(shards) - 1
	perShard int
	shards   []shard
}

type shard struct {
	mu sync.Mutex
	m  map[string]string
	_  [48]byte // keep neighbouring shards' locks off one cache line
}

// New returns a Memo of shards shards (a power of two) of at most perShard
// entries each.
func New(shards, perShard int) *Memo {
	if shards <= 0 || shards&(shards-1) != 0 || perShard <= 0 {
		panic("strmemo: shards must be a power of two and perShard positive")
	}
	m := &Memo{seed: maphash.MakeSeed(), mask: uint64(shards - 1), perShard: perShard, shards: make([]shard, shards)}
	for i := range m.shards {
		m.shards[i].m = make(map[string]string)
	}
	return m
}

// Get returns the value remembered for s. On first sight it copies s (s
// may point into a buffer that is reused; Go's map assignment would even
// replace a present key with the one given), calls derive with the copy,
// and remembers the result. derive runs under the shard's lock: it must be
// quick and must not call Get.
func (m *Memo) Get(s string, derive func(key string) string) string {
	sh := &m.shards[maphash.String(m.seed, s)&m.mask]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if v, ok := sh.m[s]; ok {
		return v
	}
	if len(sh.m) >= m.perShard {
		clear(sh.m)
	}
	k := strings.Clone(s)
	v := derive(k)
	sh.m[k] = v
	return v
}

// Len returns how many strings are remembered now.
func (m *Memo) Len() int {
	n := 0
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
