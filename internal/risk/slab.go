package risk

import (
	"hash/maphash"
	"math/bits"
	"net/netip"
	"unsafe"

	"github.com/flowlock/flowlock/internal/identity"
	"github.com/flowlock/flowlock/internal/offheap"
)

// A shard keeps its identities in a slab of fixed-size slots and finds them
// through an open-addressing index of uint32 entries, both pointer-free and,
// once large, mapped outside the Go heap (see internal/offheap).
//
// Why not map[identity.ID]int32 and a []identity.ID, as before: an
// identity.ID holds a netip.Addr and a string, 48 bytes with pointers, so
// each client cost 48 B in the ids slice, about 60-120 B in the map (its
// slots hold the key too, and it grows by doubling), all scanned by the GC
// and counted twice in RSS by its pacing. An address identity fits in 18
// bytes without pointers (key) kept beside its state, and the index needs
// 4 bytes an entry: 256 B a slot plus 5-11 B of index, measured at about
// 265 B of RSS per client at 1 M clients (BenchmarkRSSPerClient in
// test/memory), against 800 B before.

// key is an identity in a slot, without pointers: the address (As16, so an
// IPv4 address is stored IPv4-mapped and told apart by kind) and the IPv6
// grouping, or for a name identity only kind (the name itself lives in the
// shard's names, on the heap, since names are rare: --identity-header).
type key struct {
	addr [16]byte
	bits uint8 // identity.ID.IPv6Bits for kindV6 (128: not grouped)
	kind uint8
}

// Key kinds; the zero kind marks a free slot.
const (
	kindFree uint8 = iota
	kindV4
	kindV6
	kindName
	// kindComposed is an address with a name (--identity
	// address+fingerprint): the key holds the address and the name is kept
	// beside it, so one address's clients stay apart.
	kindComposed
)

// named reports whether slots of k's kind keep their identity's name.
func (k *key) named() bool { return k.kind == kindName || k.kind == kindComposed }

// keyOf returns id's key and, for a name or composed identity, its name.
func keyOf(id identity.ID) (key, string) {
	if a, ok := id.Addr(); ok && id.Name() != "" {
		k := key{addr: a.As16(), kind: kindComposed}
		if b, ok := id.IPv6Bits(); ok {
			k.bits = uint8(b)
		}
		return k, id.Name()
	}
	if a, ok := id.Addr(); ok {
		k := key{addr: a.As16(), kind: kindV4}
		if b, ok := id.IPv6Bits(); ok {
			k.kind, k.bits = kindV6, uint8(b)
		}
		return k, ""
	}
	return key{kind: kindName}, id.Name()
}

// addrID rebuilds the address identity k (kind V4 or V6): FromAddr of the
// stored address and grouping gives back the ID that keyOf took apart
// (TestKeyRoundTrip).
func (k *key) addrID() identity.ID {
	if k.kind == kindV4 {
		return identity.FromAddr(netip.AddrFrom4([4]byte(k.addr[12:])), 0)
	}
	return identity.FromAddr(netip.AddrFrom16(k.addr), int(k.bits))
}

// hashKey hashes an identity's key with the engine's seed: the low bits
// pick the shard, the high ones the index position and tag. The seed is
// random per engine, so clients cannot aim their addresses at one shard or
// one probe chain.
func hashKey(seed maphash.Seed, k *key, name string) uint64 {
	switch k.kind {
	case kindName:
		return maphash.String(seed, name)
	case kindComposed:
		return maphash.Bytes(seed, k.addr[:]) ^ maphash.String(seed, name)<<1 ^ uint64(k.bits)<<8
	}
	return maphash.Bytes(seed, k.addr[:]) ^ uint64(k.bits)<<8 ^ uint64(k.kind)
}

// slot is one identity's record in a shard's slab: its timing state, its
// key, and, while free, the next free slot. 256 bytes (TestSlotSize).
type slot struct {
	st   state
	key  key
	next int32 // next free slot while this one is free (kind == kindFree); -1: none
}

// Slab chunks: chunk 0 holds slots [0, 16), chunk k > 0 holds
// [16·2^(k−1), 16·2^k), so a shard's slab grows by doubling without ever
// copying or moving a slot (no pause, no transient double size), and the
// chunk and offset of a slot are a few bit operations away.
const firstChunkBits = 4

// chunkOf returns the chunk holding slot i and i's offset in it.
func chunkOf(i int32) (int, int32) {
	k := bits.Len32(uint32(i) >> firstChunkBits)
	if k == 0 {
		return 0, i
	}
	return k, i - 1<<(firstChunkBits+k-1)
}

// chunkStart returns the first slot of chunk k.
func chunkStart(k int) int32 {
	if k == 0 {
		return 0
	}
	return 1 << (firstChunkBits + k - 1)
}

// Index entries: 0 is empty; otherwise the top 8 bits are a tag from the
// hash (most probes of another identity stop there, without reading its
// slot) and the low 24 bits the slot + 1. So a shard holds at most
// maxShardSlots identities; New adds shards rather than exceed it.
const (
	entrySlotBits = 24
	entrySlotMask = 1<<entrySlotBits - 1
	maxShardSlots = entrySlotMask - 1
	minIndexLen   = 16
)

// slot returns slot i of sh's slab (i < sh.used).
func (sh *shard) slot(i int32) *slot {
	k, off := chunkOf(i)
	return &sh.chunks[k].S[off]
}

// newSlotLocked returns a free slot of sh, reusing a freed one first, or
// false when the slab is at the shard's limit.
func (sh *shard) newSlotLocked() (int32, bool) {
	if i := sh.freeHead; i >= 0 {
		sh.freeHead = sh.slot(i).next
		return i, true
	}
	if int(sh.used) >= sh.limit {
		return 0, false
	}
	i := sh.used
	if k, _ := chunkOf(i); k == len(sh.chunks) {
		// The last chunk is cut to the limit: no address space is taken
		// for slots the shard may never hold.
		n := min(int(chunkStart(k+1)), sh.limit) - int(chunkStart(k))
		sh.chunks = append(sh.chunks, offheap.Alloc[slot](n))
	}
	sh.used++
	return i, true
}

// freeSlotLocked clears slot i and puts it on the free list.
func (sh *shard) freeSlotLocked(i int32) {
	s := sh.slot(i)
	*s = slot{next: sh.freeHead}
	sh.freeHead = i
	if int(i) < len(sh.names) {
		sh.names[i] = identity.ID{}
	}
}

// lookupLocked returns the slot holding the identity (k, name) with hash h.
func (sh *shard) lookupLocked(h uint64, k *key, name string) (int32, bool) {
	mask := uint32(len(sh.index.S) - 1)
	tag := uint32(h>>24) &^ entrySlotMask
	for p := uint32(h>>32) & mask; ; p = (p + 1) & mask {
		ent := sh.index.S[p]
		if ent == 0 {
			return 0, false
		}
		if ent&^entrySlotMask != tag {
			continue
		}
		i := int32(ent&entrySlotMask) - 1
		if s := sh.slot(i); s.key == *k && (!k.named() || sh.names[i].Name() == name) {
			return i, true
		}
	}
}

// indexLocked adds slot i, whose identity hashes to h, to the index,
// growing it first if it would be more than 3/4 full (linear probing stays
// short below that).
func (sh *shard) indexLocked(seed maphash.Seed, h uint64, i int32) {
	if 4*(sh.count+1) > 3*len(sh.index.S) {
		sh.growIndexLocked(seed)
	}
	sh.placeLocked(h, uint32(i)+1)
	sh.count++
}

// placeLocked puts the entry for slot+1 = v, hash h, at its first empty
// probe position.
func (sh *shard) placeLocked(h uint64, v uint32) {
	mask := uint32(len(sh.index.S) - 1)
	p := uint32(h>>32) & mask
	for sh.index.S[p] != 0 {
		p = (p + 1) & mask
	}
	sh.index.S[p] = uint32(h>>24)&^entrySlotMask | v
}

// growIndexLocked doubles the index (or makes the first) and re-places
// every entry, rehashing its slot's key.
func (sh *shard) growIndexLocked(seed maphash.Seed) {
	old := sh.index
	sh.index = offheap.Alloc[uint32](max(minIndexLen, 2*len(old.S)))
	for _, ent := range old.S {
		if ent != 0 {
			sh.placeLocked(sh.hashSlotLocked(seed, int32(ent&entrySlotMask)-1), ent&entrySlotMask)
		}
	}
	old.Free()
}

// hashSlotLocked returns the hash of the identity in slot i.
func (sh *shard) hashSlotLocked(seed maphash.Seed, i int32) uint64 {
	s := sh.slot(i)
	name := ""
	if s.key.named() {
		name = sh.names[i].Name()
	}
	return hashKey(seed, &s.key, name)
}

// unindexLocked removes slot i, whose identity hashes to h, from the
// index. Backward-shift deletion: the entries after it in its probe run
// move up where their own probe allows, so no tombstones accumulate.
func (sh *shard) unindexLocked(seed maphash.Seed, h uint64, i int32) {
	mask := uint32(len(sh.index.S) - 1)
	p := uint32(h>>32) & mask
	for sh.index.S[p]&entrySlotMask != uint32(i)+1 {
		p = (p + 1) & mask
	}
	for q := (p + 1) & mask; sh.index.S[q] != 0; q = (q + 1) & mask {
		ent := sh.index.S[q]
		home := uint32(sh.hashSlotLocked(seed, int32(ent&entrySlotMask)-1)>>32) & mask
		// The entry at q may fill the hole at p unless its home lies
		// cyclically in (p, q].
		if (q-home)&mask >= (q-p)&mask {
			sh.index.S[p] = ent
			p = q
		}
	}
	sh.index.S[p] = 0
	sh.count--
}

// idLocked returns the identity in slot i.
func (sh *shard) idLocked(i int32) identity.ID {
	s := sh.slot(i)
	if s.key.named() {
		return sh.names[i]
	}
	return s.key.addrID()
}

// setNameLocked keeps the name identity id for slot i, growing names (on
// the heap, only ever with name identities) to cover it.
func (sh *shard) setNameLocked(i int32, id identity.ID) {
	if int(i) >= len(sh.names) {
		sh.names = append(sh.names, make([]identity.ID, int(sh.used)-len(sh.names))...)
	}
	sh.names[i] = id.Clone()
}

// releaseLocked returns sh's slab and index to the system.
func (sh *shard) releaseLocked() {
	for k := range sh.chunks {
		sh.chunks[k].Free()
	}
	sh.chunks = nil
	sh.index.Free()
	sh.used, sh.count, sh.freeHead, sh.names = 0, 0, -1, nil
}

// MappedAtCap returns about how many bytes an engine holding maxClients
// identities maps outside the Go heap, where a GOMEMLIMIT does not see
// them: a slot each and its index entry with the index at its emptiest
// after a doubling (3/8 full, 11 B an identity).
func MappedAtCap(maxClients int) int64 {
	return int64(maxClients) * (int64(unsafe.Sizeof(slot{})) + 11)
}
