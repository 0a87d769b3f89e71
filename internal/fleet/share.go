package fleet

import (
	"encoding/binary"
	"errors"
	"fmt"

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

// notesFormat is the first byte of an encoded batch.
const notesFormat = 1

// maxIDText bounds an identity's text in a batch read back: an address, a
// grouped prefix or a name of at most identity's limit, with room.
const maxIDText = 1024

// errNotes is the error of a batch that does not decode.
var errNotes = errors.New("fleet notes: malformed batch")

// Outbox encodes at most max of the notes waiting for the other replicas,
// oldest first, after draining the queue, and returns the batch and how
// many notes it holds; nil and 0 when none wait. The notes stay until
// Shipped confirms them, so a batch Redis did not take is sent again.
func (d *Detector) Outbox(max int) ([]byte, int) {
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
	b := make([]byte, 0, 1+n*32)
	b = append(b, notesFormat)
	for _, o := range d.out[:n] {
		id, err := o.id.MarshalText()
		if err != nil {
			id = nil // an identity with no text: sent as empty, dropped on import
		}
		b = binary.AppendUvarint(b, uint64(len(id)))
		b = append(b, id...)
		b = binary.BigEndian.AppendUint32(b, o.hash)
		b = binary.AppendVarint(b, o.at)
		b = binary.AppendUvarint(b, uint64(len(o.path)))
		b = append(b, o.path...)
	}
	return b, n
}

// Shipped removes the first n notes of the outbox: the other replicas have
// them.
func (d *Detector) Shipped(n int) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	n = min(n, len(d.out))
	clear(d.out[:n]) // let the identities and paths go
	d.out = append(d.out[:0], d.out[n:]...)
}

// Import adds the requests of a batch another replica's Outbox encoded to
// the tracks, as Merge does: a request the tracks hold already is kept
// once, and none of them goes to this detector's outbox. A batch that does
// not decode is an error and adds nothing past the point of damage.
func (d *Detector) Import(b []byte) error {
	if d == nil {
		return nil
	}
	if len(b) == 0 || b[0] != notesFormat {
		return fmt.Errorf("%w: unknown format", errNotes)
	}
	b = b[1:]
	d.mu.Lock()
	defer d.mu.Unlock()
	d.drain() // local notes first: they are the outbox's
	for len(b) > 0 {
		idText, rest, ok := chunk(b, maxIDText)
		if !ok || len(rest) < 4 {
			return errNotes
		}
		hash := binary.BigEndian.Uint32(rest)
		at, k := binary.Varint(rest[4:])
		if k <= 0 {
			return errNotes
		}
		path, rest, ok := chunk(rest[4+k:], maxPathName)
		if !ok {
			return errNotes
		}
		b = rest
		var id identity.ID
		if len(idText) == 0 || id.UnmarshalText(idText) != nil {
			continue
		}
		if d.sample != 0 && idHash(id) >= d.sample {
			continue
		}
		if d.addHashed(id, string(path), hash, at) {
			d.imported++
		}
	}
	return nil
}

// chunk splits a uvarint-length-prefixed field of at most limit bytes off
// b.
func chunk(b []byte, limit int) (field, rest []byte, ok bool) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(limit) || uint64(len(b)-k) < n {
		return nil, nil, false
	}
	return b[k : k+int(n)], b[k+int(n):], true
}
