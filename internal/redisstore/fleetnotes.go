package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Fleet notes (issue 14): every replica's fleet detector sees only the
// Checks Envoy sent it, so each ships the requests it noted, in opaque
// batches the fleet package encodes, to one capped stream, and reads the
// others' batches back. The store only moves the bytes.

// NotesCap is about how many batches the stream keeps (trimmed
// approximately, as XADD MAXLEN ~ does cheaply). A replica reads every
// second, so the stream needs seconds of history, not more: 256 batches
// are 10 s of three replicas writing at their most (8 batches a second
// each) and minutes at ordinary rates. A batch is at most 82 KB (4,096
// fixed-size notes of hashes, fleet.BatchSize), so the stream holds 21 MB
// of notes at most, about 25 MB of Redis's memory (TestNotesStreamMemory in
// internal/shared measures it; docs/RATIONALE.md, "Fleet detection across
// replicas"). A replica that falls further behind loses the oldest.
const NotesCap = 256

// NotesBatch is one batch of the stream.
type NotesBatch struct {
	ID   string // the stream entry's ID, the cursor for the next read
	From string // the replica that wrote it
	Data []byte
}

// notesKey is the stream's key.
func (k keys) notesKey() string { return k.prefix + "fleet" }

// AddNotes appends one batch from the replica named from and returns
// its entry ID, which says when Redis took it (NotesTime).
func (s *Store) AddNotes(ctx context.Context, from string, data []byte) (string, error) {
	return within(ctx, func() (string, error) {
		cmd := s.c.B().Xadd().Key(s.keys.notesKey()).Maxlen().Almost().Threshold(strconv.Itoa(NotesCap)).
			Id("*").FieldValue().FieldValue("from", from).FieldValue("notes", string(data)).Build()
		id, err := s.c.Do(ctx, cmd).ToString()
		if err != nil {
			return "", fmt.Errorf("fleet notes: %w", err)
		}
		return id, nil
	})
}

// NotesTime returns the time Redis's clock read when it took the batch
// whose entry ID is id ("<Unix ms>-<seq>"), or false.
func NotesTime(id string) (time.Time, bool) {
	ms, _, ok := strings.Cut(id, "-")
	if !ok {
		return time.Time{}, false
	}
	v, err := strconv.ParseInt(ms, 10, 64)
	if err != nil || v < 0 {
		return time.Time{}, false
	}
	return time.UnixMilli(v), true
}

// ReadNotes returns at most count batches written after the entry ID
// after ("" from the oldest kept), oldest first.
func (s *Store) ReadNotes(ctx context.Context, after string, count int) ([]NotesBatch, error) {
	return within(ctx, func() ([]NotesBatch, error) {
		start := "-"
		if after != "" {
			start = "(" + after
		}
		es, err := s.c.Do(ctx, s.c.B().Xrange().Key(s.keys.notesKey()).Start(start).End("+").Count(int64(count)).Build()).AsXRange()
		if err != nil {
			return nil, fmt.Errorf("fleet notes: %w", err)
		}
		out := make([]NotesBatch, 0, len(es))
		for _, e := range es {
			out = append(out, NotesBatch{ID: e.ID, From: e.FieldValues["from"], Data: []byte(e.FieldValues["notes"])})
		}
		return out, nil
	})
}
