package redisstore

import (
	"context"
	"fmt"
	"strconv"
)

// Fleet notes (issue 14): every replica's fleet detector sees only the
// Checks Envoy sent it, so each ships the requests it noted, in opaque
// batches the fleet package encodes, to one capped stream, and reads the
// others' batches back. The store only moves the bytes.

// NotesCap is about how many batches the stream keeps (trimmed
// approximately, as XADD MAXLEN ~ does cheaply). A replica reads every
// second, so the stream needs seconds of history, not more: 256 batches
// are 10 s of three replicas writing at their most (8 batches a second
// each) and minutes at ordinary rates, and at most about 40 MB (batches of
// 4,096 requests). A replica that falls further behind loses the oldest.
const NotesCap = 256

// NotesBatch is one batch of the stream.
type NotesBatch struct {
	ID   string // the stream entry's ID, the cursor for the next read
	From string // the replica that wrote it
	Data []byte
}

// notesKey is the stream's key.
func (k keys) notesKey() string { return k.prefix + "fleet" }

// AddNotes appends one batch from the replica named from.
func (s *Store) AddNotes(ctx context.Context, from string, data []byte) error {
	_, err := within(ctx, func() (struct{}, error) {
		cmd := s.c.B().Xadd().Key(s.keys.notesKey()).Maxlen().Almost().Threshold(strconv.Itoa(NotesCap)).
			Id("*").FieldValue().FieldValue("from", from).FieldValue("notes", string(data)).Build()
		if err := s.c.Do(ctx, cmd).Error(); err != nil {
			return struct{}{}, fmt.Errorf("fleet notes: %w", err)
		}
		return struct{}{}, nil
	})
	return err
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
