package fleet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/flowlock/flowlock/internal/identity"
)

// Sharing across replicas. Envoy spreads each member's requests over the
// replicas, so one replica sees a third of a fleet's requests with three:
// too few for two agreeing gaps or three shared windows per member within
// 15 minutes. With Options.Outbox set, the requests this detector noted
// itself (not those it imported) wait in a bounded outbox; the replica
// link (internal/shared) takes them in batches (Outbox, Shipped), writes
// them to Redis, and hands the other replicas' batches to Import. A track
// is a set of requests, so every replica then holds the same tracks and
// finds the same fleets (see Merge, and docs/RATIONALE.md, "Fleet
// detection across replicas"); a batch delivered twice (a write that
// outlived its deadline and was sent again) adds nothing the second time.
//
// A note is fixed-size and holds hashes only: the identity's key (idKey,
// as the timing rings are named in Redis) and the route's hash, never the
// identity, the path or its query string. So a replica tracks another's
// clients by key and admits only the members it saw itself; the replica
// that saw a member admits it, and the quarantine is shared as any other.
//
// Times are trusted only as far as the clocks behind them agree. A batch
// is stamped with its writer's clock, and Redis's stream entry ID says
// when Redis took it: a stamp further than Options.Skew from that is a
// writer whose clock is off (it decides on its own clock, --clock-skew),
// and its notes would put false gaps of the clocks' difference into every
// track they join, so the batch is refused. A replica learns the same of
// itself when Redis takes its own batch (Shipped), and refuses every batch
// while its clock is off, since its own notes are then the ones out of
// step. Notes outside [Redis's time − Window, + Skew] are dropped: a note
// from the future would hide its identity's gaps and never age out.

// notesFormat is the first byte of an encoded batch: 2 since notes carry
// hashes (format 1 carried identities and paths, and is refused).
const notesFormat = 2

// Sizes of an encoded batch: the format byte and the writer's stamp, then
// notes of the identity's key, the route's hash and the time.
const (
	headerSize = 1 + 8
	noteSize   = 8 + 4 + 8
)

// BatchSize is the size in bytes of a batch of n notes, for a caller that
// bounds what it reads and writes.
func BatchSize(n int) int { return headerSize + n*noteSize }

// errNotes is the error of a batch that does not decode.
var errNotes = errors.New("fleet notes: malformed batch")

// ErrClock is the error of a batch Import refused for its clock: stamped
// further than Options.Skew from Redis's time, or read while this
// replica's own clock was that far off.
var ErrClock = errors.New("fleet notes: clocks disagree by more than the skew")

// Outbox encodes at most max of the notes waiting for the other replicas,
// oldest first, after draining the queue, stamped with now (this replica's
// clock), and returns the batch and how many notes it holds; nil and 0
// when none wait. The notes stay until Shipped confirms them, so a batch
// Redis did not take is sent again.
func (d *Detector) Outbox(max int, now time.Time) ([]byte, int) {
	if d == nil {
		return nil, 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drain()
	n := min(max, len(d.out))
	if n == 0 {
		return nil, 0
	}
	d.stamp = now.UnixMilli()
	b := make([]byte, 0, BatchSize(n))
	b = append(b, notesFormat)
	b = binary.BigEndian.AppendUint64(b, uint64(d.stamp))
	for _, o := range d.out[:n] {
		b = binary.BigEndian.AppendUint64(b, o.key)
		b = binary.BigEndian.AppendUint32(b, o.hash)
		b = binary.BigEndian.AppendUint64(b, uint64(o.at))
	}
	return b, n
}

// Shipped removes the first n notes of the outbox: the other replicas have
// them. at is when Redis took the batch (its stream entry ID), zero when
// unknown: a batch Redis stamped further than Options.Skew from this
// replica's clock says this replica's clock is off, and until a later
// batch says otherwise Import refuses the other replicas' batches.
func (d *Detector) Shipped(n int, at time.Time) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n = min(n, len(d.out))
	d.out = append(d.out[:0], d.out[n:]...)
	if !at.IsZero() {
		d.offClock = !near(d.stamp, at.UnixMilli(), d.o.Skew.Milliseconds())
	}
}

// Import adds the requests of a batch another replica's Outbox encoded,
// which Redis took at at (its stream entry ID), to the tracks, as Merge
// does: a request the tracks hold already is kept once, and none of them
// goes to this detector's outbox. A batch that does not decode is an error
// and adds nothing; so is one refused for its clock (ErrClock, counted in
// Stats.Refused). Notes outside [at − Window, at + Skew] are dropped and
// counted (Stats.Stale). Every other note is kept: its writer sampled it
// (Options.SampleRate) by the identity it saw, which a key cannot repeat.
func (d *Detector) Import(b []byte, at time.Time) error {
	if d == nil {
		return nil
	}
	if len(b) == 0 || b[0] != notesFormat {
		return fmt.Errorf("%w: unknown format", errNotes)
	}
	if len(b) < headerSize || (len(b)-headerSize)%noteSize != 0 {
		return fmt.Errorf("%w: %d bytes", errNotes, len(b))
	}
	stamp := int64(binary.BigEndian.Uint64(b[1:]))
	d.mu.Lock()
	defer d.mu.Unlock()
	redis, skew := at.UnixMilli(), d.o.Skew.Milliseconds()
	if d.offClock || !near(stamp, redis, skew) {
		d.refused++
		return ErrClock
	}
	lo, hi := redis-d.o.Window.Milliseconds(), redis+skew
	d.drain() // local notes first: they are the outbox's
	for b = b[headerSize:]; len(b) > 0; b = b[noteSize:] {
		key := binary.BigEndian.Uint64(b)
		hash := binary.BigEndian.Uint32(b[8:])
		t := int64(binary.BigEndian.Uint64(b[12:]))
		if t < lo || t > hi {
			d.stale++
			continue
		}
		if d.addHashed(key, identity.ID{}, "", hash, t) {
			d.imported++
		}
	}
	return nil
}

// near reports whether a is within skew of b (times in ms; a may be
// anything a batch holds, so no subtraction that could overflow).
func near(a, b, skew int64) bool { return a >= b-skew && a <= b+skew }
